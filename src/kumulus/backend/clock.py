"""Time in UTC, and a fix for SQLite handing back naive datetimes.

Every backend module reads the time through `utcnow`, so tests move it with `travel`
(expiring tokens, cool-downs) instead of sleeping."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

_offset = timedelta(0)


def utcnow() -> datetime:
    return datetime.now(UTC) + _offset


def aware(value: datetime) -> datetime:
    """SQLite drops tzinfo on DateTime(timezone=True); every value we store is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@contextmanager
def travel(by: timedelta) -> Iterator[None]:
    """Within the block, `utcnow` is `by` later (for tests; the process's whole clock)."""
    global _offset
    _offset += by
    try:
        yield
    finally:
        _offset -= by
