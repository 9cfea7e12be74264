"""How the consumer plans a poll into handler calls: one call per handler however the types
interleave across keys, and every key's records in partition order."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.events.codec import InvalidRecord
from shared.kafka.consumer import Decoded, plan

Record = namedtuple("Record", "topic partition offset key value headers")


async def on_customer(uow: Any, events: Any) -> None: ...


async def on_pickup(uow: Any, events: Any) -> None: ...


def _item(offset: int, key: str | None, handler: Any, partition: int = 0) -> Decoded:
    record = Record("aftersales.intake", partition, offset, key.encode() if key else None, b"", [])
    if handler == "invalid":
        return Decoded(record, invalid=InvalidRecord("MalformedJSON", "not JSON"))
    return Decoded(record, handler=handler)


def test_interleaved_types_of_different_keys_make_one_call_per_handler() -> None:
    """CustomerRegistered (by customer) and VehiclePickedUp (by VIN) alternating in a poll."""
    items = []
    for n in range(250):
        items.append(_item(2 * n, f"CUST-{n}", on_customer))
        items.append(_item(2 * n + 1, f"VIN-{n}", on_pickup))
    calls = plan(items)
    assert [c[0].handler for c in calls] == [on_customer, on_pickup]
    assert [len(c) for c in calls] == [250, 250]
    assert [i.record.offset for i in calls[0]] == list(range(0, 500, 2)), "each call in partition order"


def test_one_keys_records_that_alternate_between_handlers_stay_in_order() -> None:
    items = [_item(0, "K", on_customer), _item(1, "K", on_pickup), _item(2, "K", on_customer),
             _item(3, "L", on_customer)]
    calls = plan(items)
    assert [(c[0].handler, [i.record.offset for i in c]) for c in calls] == [
        (on_customer, [0, 3]), (on_pickup, [1]), (on_customer, [2])]


def test_the_same_key_on_two_partitions_is_two_keys_and_records_without_a_key_are_not_ordered() -> None:
    items = [_item(0, "K", on_customer, partition=0), _item(0, "K", on_pickup, partition=1),
             _item(1, None, on_customer), _item(2, None, "invalid"), _item(3, None, on_customer)]
    calls = plan(items)
    assert [len(c) for c in calls] == [3, 1, 1]
    assert calls[0][0].handler is on_customer and calls[1][0].handler is on_pickup and calls[2][0].invalid


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["A", "B", "C", "D", None]), st.sampled_from([0, 1]),
                          st.sampled_from([on_customer, on_pickup, "invalid"])), max_size=60))
def test_every_record_is_planned_once_and_each_keys_order_is_kept(drawn: list[tuple[Any, int, Any]]) -> None:
    items = [_item(offset, key, handler, partition) for offset, (key, partition, handler) in enumerate(drawn)]
    calls = plan(items)
    flat = [item for call in calls for item in call]
    assert sorted(i.record.offset for i in flat) == list(range(len(items))), "every record, once"
    for call in calls:  # a call holds one handler's records (or only invalid ones)
        assert len({("invalid" if i.invalid else id(i.handler)) for i in call}) == 1
    position = {id(item): n for n, item in enumerate(flat)}
    for key in {(i.record.partition, i.record.key) for i in items if i.record.key is not None}:
        mine = [i for i in items if (i.record.partition, i.record.key) == key]
        assert [position[id(i)] for i in mine] == sorted(position[id(i)] for i in mine), f"{key} out of order"
    # stages: as many as the longest run of handler switches of one key; one call per handler in each
    def kind(i: Decoded) -> object:
        return "invalid" if i.invalid else i.handler

    runs = [1 + sum(kind(a) is not kind(b) for a, b in zip(mine, mine[1:], strict=False))
            for key in {(i.record.partition, i.record.key) for i in items if i.record.key is not None}
            for mine in [[i for i in items if (i.record.partition, i.record.key) == key]]]
    kinds = {("invalid" if i.invalid else id(i.handler)) for i in items}
    assert len(calls) <= max(runs, default=1) * max(1, len(kinds)), "no more calls than stages allow"
