"""Leases: at most one backend process runs a given job at a time, claimed with a
conditional UPDATE (works on SQLite and PostgreSQL, survives the holder dying: the lease
simply expires)."""

from __future__ import annotations

import time

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from kumulus.backend.db import upsert_insert
from kumulus.backend.models import WorkerLease


def acquire(db: Session, name: str, owner: str, ttl: float, now: float | None = None) -> bool:
    """Take or renew the lease `name` for `ttl` seconds; True if `owner` holds it (commits)."""
    now = time.time() if now is None else now
    db.execute(
        upsert_insert(db, WorkerLease)
        .values(name=name, owner=owner, expires_at=now + ttl)
        .on_conflict_do_nothing()
    )
    claimed = db.execute(
        update(WorkerLease)
        .where(
            WorkerLease.name == name,
            or_(WorkerLease.owner == owner, WorkerLease.expires_at < now),
        )
        .values(owner=owner, expires_at=now + ttl)
    )
    db.commit()
    return bool(claimed.rowcount == 1)  # type: ignore[attr-defined]


def release(db: Session, name: str, owner: str) -> None:
    """Give the lease up (on a clean shutdown), so another process need not wait for it."""
    db.execute(
        update(WorkerLease)
        .where(WorkerLease.name == name, WorkerLease.owner == owner)
        .values(expires_at=0.0)
    )
    db.commit()
