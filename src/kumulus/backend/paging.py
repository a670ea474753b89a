"""Keyset pagination for every list endpoint: `?limit=N&after=<cursor>` ->
{"items": [...], "next": cursor | null}.

A cursor is the sort key of the last item of a page (urlsafe base64 of JSON), so pages
stay correct while rows are added or removed, and any replica can serve the next page.
Clients treat it as opaque; a cursor that does not decode is a 422."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Select, tuple_
from sqlalchemy.orm import InstrumentedAttribute, Session

from kumulus.core.cursors import After, Limit, decode_cursor, encode_cursor
from kumulus.core.errors import InvalidError

__all__ = ["After", "Limit", "page"]

_Row = TypeVar("_Row")


def page(
    db: Session,
    stmt: Select[_Row],
    keys: Sequence[InstrumentedAttribute[Any]],
    limit: int,
    after: str | None,
    *,
    descending: bool = False,
) -> tuple[list[_Row], str | None]:
    """One page of `stmt` (a select of one entity) ordered by `keys` (unique together),
    starting after `after`; and the cursor of the next page (None on the last)."""
    if after is not None:
        values = decode_cursor(after, len(keys))
        # A cursor holds exactly the key's types: anything else was not made by us.
        if not all(isinstance(v, k.type.python_type) for v, k in zip(values, keys, strict=True)):
            raise InvalidError("after: not a cursor from this list; start from the first page")
        row_key = tuple_(*keys)
        stmt = stmt.where(row_key < tuple_(*values) if descending else row_key > tuple_(*values))
    order = [k.desc() for k in keys] if descending else list(keys)
    rows = list(db.scalars(stmt.order_by(*order).limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1]
    return rows, encode_cursor([getattr(last, k.key) for k in keys])
