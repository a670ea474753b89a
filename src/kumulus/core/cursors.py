"""Cursors of paged lists on both APIs: `?limit=N&after=<cursor>` ->
{"items": [...], "next": cursor | null}.

A cursor is the sort key of the last item of a page (urlsafe base64 of JSON), so pages stay
correct while items come and go, and any replica can serve the next page. Clients treat
it as opaque; one that does not decode is a 422."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import Query

from kumulus.core.errors import InvalidError

MAX_LIMIT = 200
# Cursor integers are row ids in 64-bit columns: a larger one would reach the database
# driver and fail there (a 500), so it is refused as a forged cursor.
_INT64 = range(-(2**63), 2**63)
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")]
After = Annotated[
    str | None,
    Query(max_length=512, pattern=r"^[A-Za-z0-9_=-]+$", description="`next` of the page before"),
]


def encode_cursor(values: Sequence[Any]) -> str:
    plain = [{"t": v.isoformat()} if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str, width: int) -> list[Any]:
    try:
        plain = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not isinstance(plain, list) or len(plain) != width:
            raise ValueError("wrong width")
        values: list[Any] = []
        for v in plain:
            if isinstance(v, dict):
                values.append(datetime.fromisoformat(str(v["t"])))
            elif isinstance(v, str) or (
                isinstance(v, int) and not isinstance(v, bool) and v in _INT64
            ):
                values.append(v)
            else:
                raise ValueError("not a cursor value")
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise InvalidError("after: not a cursor from this list; start from the first page") from exc
    return values


_T = TypeVar("_T")


def page_list(
    items: Sequence[_T], key: Callable[[_T], Sequence[Any]], limit: int, after: str | None
) -> tuple[list[_T], str | None]:
    """One page of `items` (sorted by `key`, which is unique and of a fixed width)
    after the cursor `after`, and the cursor of the next page (None on the last)."""
    rest = list(items)
    if after is not None and rest:
        first = list(key(rest[0]))
        values = decode_cursor(after, len(first))
        # A cursor holds exactly the key's types: anything else was not made by us, and
        # would not compare with the keys (a TypeError, a 500).
        if any(type(v) is not type(k) for v, k in zip(values, first, strict=True)):
            raise InvalidError("after: not a cursor from this list; start from the first page")
        rest = [item for item in rest if list(key(item)) > values]
    if len(rest) <= limit:
        return rest, None
    return rest[:limit], encode_cursor(key(rest[limit - 1]))
