"""The runner's lease (kumulus.core.jobs.Lease) over the worker_leases table."""

from __future__ import annotations

from kumulus.backend import leases
from kumulus.backend.db import Database


class DbLease:
    """Leases shared by every backend process on one database (see backend/leases.py)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def acquire(self, name: str, owner: str, ttl: float) -> int | None:
        with self._db.session() as s:
            return leases.acquire(s, name, owner, ttl)

    def renew(self, name: str, owner: str, token: int, ttl: float) -> bool:
        with self._db.session() as s:
            renewed = leases.renew(s, name, owner, token, ttl)
            s.commit()
            return renewed

    def release(self, name: str, owner: str) -> None:
        with self._db.session() as s:
            leases.release(s, name, owner)
