"""Leases: at most one backend process runs a given job at a time, claimed with a
conditional UPDATE (works on SQLite and PostgreSQL, survives the holder dying: the lease
simply expires).

A lease is short and renewed by its holder while it works (core/jobs.py). Each time it is
taken anew (by another owner, or after it expired) its `generation` grows: a holding is
(owner, generation), and renewals and fenced commits (backend/lease_fence.py) of an older
holding fail, whatever the clocks say."""

from __future__ import annotations

import time

from sqlalchemy import and_, case, or_, update
from sqlalchemy.orm import Session

from kumulus.backend.db import upsert_insert
from kumulus.backend.lease_fence import renew
from kumulus.backend.models import WorkerLease

__all__ = ["acquire", "release", "renew"]


def acquire(db: Session, name: str, owner: str, ttl: float, now: float | None = None) -> int | None:
    """Take or renew the lease `name` for `ttl` seconds (commits). Returns the holding's
    generation (>= 1, so truthy) if `owner` now holds it, None while another owner's
    lease stands. A renewal of an unexpired holding keeps its generation."""
    now = time.time() if now is None else now
    db.execute(
        upsert_insert(db, WorkerLease)
        .values(name=name, owner=owner, expires_at=now + ttl, generation=1)
        .on_conflict_do_nothing()
    )
    generation = db.execute(
        update(WorkerLease)
        .where(
            WorkerLease.name == name,
            or_(WorkerLease.owner == owner, WorkerLease.expires_at < now),
        )
        .values(
            owner=owner,
            expires_at=now + ttl,
            # SET reads the row as it was: still ours and unexpired = the same holding.
            generation=case(
                (
                    and_(WorkerLease.owner == owner, WorkerLease.expires_at >= now),
                    WorkerLease.generation,
                ),
                else_=WorkerLease.generation + 1,
            ),
        )
        .returning(WorkerLease.generation)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    db.commit()
    return generation


def release(db: Session, name: str, owner: str) -> None:
    """Give the lease up (on a clean shutdown), so another process need not wait for it."""
    db.execute(
        update(WorkerLease)
        .where(WorkerLease.name == name, WorkerLease.owner == owner)
        .values(expires_at=0.0)
    )
    db.commit()
