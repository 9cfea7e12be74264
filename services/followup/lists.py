"""What follow-up's lists share (issue 21 and 19): a cursor page of a list computed in Python
rather than SQL (the queue, the customers at risk), the ETag's documentation, and the rule that an
agent of the whole group names a filter to list customers' data."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import HTTPException, Request

from services.followup import store
from shared.api import Page, PageParams, Sort, bad_cursor, make_page
from shared.db import acquire
from shared.http import Principal, outside_scope, runtime_of

K = TypeVar("K")


def etag_doc(what: str) -> dict[int | str, dict[str, Any]]:
    """The 200 of a GET that answers an ETag (the resource's version, for If-Match on its actions)."""
    return {200: {"headers": {"ETag": {"description": f"the {what}'s version: send it as If-Match on its actions",
                                       "schema": {"type": "string"}, "example": '"5d41402abc4b2a76b9719d911017c592"'}}}}


def page_of(rows: Sequence[K], sort: Sort, paging: PageParams, key_of: Callable[[K], list[Any]]) -> Page[K]:
    """A cursor page of a list computed here rather than in SQL (the queue, the customers at risk):
    `key_of(row)` is the row's sort value and its unique tiebreak, [value, tiebreak], of one type
    per position (strings for moments: `moment_key`)."""
    keyed = sorted(((key_of(r), r) for r in rows), key=lambda kr: kr[0], reverse=sort.descending)
    cursor = paging.cursor
    if cursor is not None:
        if cursor.get("s") != sort.text:
            raise bad_cursor(f"it was made for sort {cursor.get('s')!r}, not {sort.text!r}; start again without "
                              "a cursor")
        after = cursor.get("k")
        if not isinstance(after, list) or len(after) != 2:
            raise bad_cursor("it is not a cursor this API wrote")
        try:
            keyed = [(k, r) for k, r in keyed if (k < after if sort.descending else k > after)]
        except TypeError:
            raise bad_cursor("it is not a cursor this API wrote") from None
    chosen = [r for _, r in keyed[:paging.limit + 1]]
    return make_page(chosen, paging.limit, sort, lambda r: (key_of(r)[0], key_of(r)[1]))


def moment_key(at: datetime) -> str:
    """A moment as a string that sorts as the moment does (UTC, fixed width)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def narrowed(who: Principal, **filters: Any) -> None:
    """Issue 19: an agent of the whole group (not scoped to regions or dealers: the hotline) lists
    customers' data only by naming one of these filters; a scoped agent's lists hold their own
    customers, a supervisor's everyone (every page capped)."""
    if who.role == "agent" and not who.scoped and all(v is None for v in filters.values()):
        names = ", ".join(filters)
        raise HTTPException(422, [{"loc": ["query", name], "type": "filter_required",
                                   "msg": f"an agent lists customers' data by {names}; give one of them"}
                                  for name in filters])


async def hold_to_scope(request: Request, who: Principal, *, customer_id: str | None = None,
                         followup_id: str | None = None) -> None:
    """403 when a scoped agent asks for a follow-up or a customer outside their regions and dealers
    (store.CUSTOMER_IN_SCOPE; docs/security.md). Nothing to check for anyone else; an unknown
    follow-up is left to the route (404)."""
    if not who.scoped:
        return
    runtime = runtime_of(request)
    assert runtime.pool is not None
    async with acquire(runtime.pool) as conn:
        what = f"customer {customer_id}"
        if followup_id is not None:
            f = await store.get_followup(conn, followup_id)
            if f is None:
                return
            customer_id, what = f["customer_id"], f"follow-up {followup_id} (customer {f['customer_id']})"
        if not await store.customers_in_scope(conn, [customer_id or ""], *who.scope_params()):
            raise outside_scope(who, what)
