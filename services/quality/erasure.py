"""Customer erasure, quality's side (issue 19; intake publishes CustomerErased after scrubbing its
own files): the owner's name and the defect reports' free text of the customer and of the files it
merged are set to NULL; the vehicles stay in service, in their batches and in their recalls (the
owner shows as erased), so the early warning, the recall's progress and the shipment figures are
the same. The replay guard: an event about an erased customer that occurred at or before the
erasure files no personal value (erasure_store.erased); a later one is filed as usual."""

from __future__ import annotations

from datetime import datetime

from services.quality import erasure_store, store
from services.quality.config import QualityDeps
from shared.events import Event
from shared.events import canonical as c
from shared.uow import UnitOfWork

Uow = UnitOfWork[QualityDeps]


async def on_customer_erased(uow: Uow, events: list[Event[c.CustomerErased]]) -> None:
    """Record each erased customer (and its merged files) and scrub what it filed up to the
    erasure; a second CustomerErased keeps the first record and finds nothing left to scrub
    (what the customer gave again later stays)."""
    erasures: dict[str, tuple[str, datetime]] = {}
    for event in events:
        d = event.data
        for customer_id in (d.customer_id, *d.merged_customer_ids):
            erasures.setdefault(customer_id, (d.erasure_id, d.erased_at))
    ids = sorted(erasures)
    # Lock order as the sale handler's: the vehicles, then the customers.
    await store.lock_vehicles(uow.conn, await erasure_store.vins_of(uow.conn, ids))
    await erasure_store.lock_customers(uow.conn, ids)
    new = await erasure_store.record(uow.conn, [(cid, *erasures[cid]) for cid in ids])
    # Up to the erasure as registered (the first one): a redelivery leaves what came after it.
    scrubbed = await erasure_store.scrub(uow.conn, await erasure_store.erased(uow.conn, ids))
    for event in events:  # ids only in the log: what was erased, never what it said
        uow.log.info("customer erased", customer_id=event.data.customer_id, erasure_id=event.data.erasure_id,
                     merged=len(event.data.merged_customer_ids), new=new, **scrubbed)


def kept(erased_at: datetime | None, occurred_at: datetime) -> bool:
    """Whether an event that occurred at `occurred_at` may file the customer's personal values:
    not when the customer was erased at or after it (a replay or a late delivery)."""
    return erased_at is None or occurred_at > erased_at
