"""A `limits` storage on our database: fixed-window counters every backend process shares.

`limits` ships storages for Redis, Memcached and MongoDB, none for SQL; this is the small
part it needs for its fixed-window strategy (`incr`, `get`, `get_expiry`, `clear`), on the
`rate_counters` table. `incr` is one atomic upsert that works on SQLite and PostgreSQL
alike: a row past its expiry restarts at `amount` with a new expiry, a live one is
incremented, and the statement returns the count after it. Each call is its own short
transaction on its own connection, committed at once: a count never waits for, or rolls
back with, the request that caused it. Keys are stored as their SHA-256."""

from __future__ import annotations

import hashlib
import time

from limits.storage import Storage
from sqlalchemy import case, delete
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from kumulus.backend.db import Database, upsert_insert
from kumulus.backend.models import RateCounter


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class DatabaseStorage(Storage):
    """Fixed-window counters in `rate_counters` (for `limits.FixedWindowRateLimiter`)."""

    STORAGE_SCHEME = None  # made directly, never from a storage URI

    def __init__(self, db: Database) -> None:
        super().__init__(wrap_exceptions=True)  # database errors become limits.StorageError
        self._db = db

    @property
    def base_exceptions(self) -> type[Exception]:
        return SQLAlchemyError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        table = RateCounter.__table__
        with self._db.session() as s:
            stmt = upsert_insert(s, table).values(
                key=_digest(key), count=amount, expires_at=now + expiry
            )
            dead = table.c.expires_at <= now
            stmt = stmt.on_conflict_do_update(
                index_elements=[table.c.key],
                set_={
                    "count": case((dead, amount), else_=table.c.count + amount),
                    "expires_at": case((dead, now + expiry), else_=table.c.expires_at),
                },
            ).returning(table.c.count)
            count = int(s.execute(stmt).scalar_one())
            s.commit()
        return count

    def _live(self, s: Session, key: str) -> RateCounter | None:
        row = s.get(RateCounter, _digest(key))
        return row if row is not None and row.expires_at > time.time() else None

    def get(self, key: str) -> int:
        with self._db.session() as s:
            row = self._live(s, key)
            return row.count if row is not None else 0

    def get_expiry(self, key: str) -> float:
        with self._db.session() as s:
            row = self._live(s, key)
            return row.expires_at if row is not None else time.time()

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        with self._db.session() as s:
            removed = s.execute(delete(RateCounter)).rowcount  # type: ignore[attr-defined]
            s.commit()
        return int(removed or 0)

    def clear(self, key: str) -> None:
        with self._db.session() as s:
            s.execute(delete(RateCounter).where(RateCounter.key == _digest(key)))
            s.commit()


def prune_rate_counters(s: Session) -> int:
    """Drop windows that ended (the prune job)."""
    result = s.execute(delete(RateCounter).where(RateCounter.expires_at <= time.time()))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
