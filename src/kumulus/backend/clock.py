"""Time in UTC, and a fix for SQLite handing back naive datetimes."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """SQLite drops tzinfo on DateTime(timezone=True); every value we store is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)
