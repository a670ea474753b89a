"""Fencing: a job run that lost its lease commits nothing.

The runner (core/jobs.py) binds the run's holding (`jobs.current_hold()`) while a leased
job runs; every session of this database checks it at commit (`install`): when a holding
is bound, the commit first renews it, by owner *and* generation, inside the very
transaction it commits. If another process took the lease meanwhile the renewal matches no
row and the commit raises `jobs.LeaseLostError` instead (the transaction is rolled back by
the session's owner), and the run is marked lost so it stops at its next step.

Why this is enough on both databases: on PostgreSQL the renewal holds the lease row's lock
until the COMMIT, so a takeover either happened before it (the generation moved: no row) or
waits for the commit and then finds the lease unexpired; SQLite runs one writer at a time.
What it cannot fence: effects outside the database (agent calls, chain submissions) made
after the loss and before the next commit or `jobs.check_lease()`; those jobs' calls are
idempotent for that reason."""

from __future__ import annotations

import time

from sqlalchemy import event, update
from sqlalchemy.orm import Session, sessionmaker

from kumulus.backend.models import WorkerLease
from kumulus.core import jobs


def renew(
    db: Session, name: str, owner: str, generation: int, ttl: float, now: float | None = None
) -> bool:
    """Extend the holding (owner, generation) of lease `name` to `ttl` seconds from now,
    in the caller's transaction (no commit). False if the lease changed hands since: that
    holding is over for good. A holding that expired but was not taken is renewed (nobody
    else can have run under it)."""
    now = time.time() if now is None else now
    result = db.execute(
        update(WorkerLease)
        .where(
            WorkerLease.name == name,
            WorkerLease.owner == owner,
            WorkerLease.generation == generation,
        )
        .values(expires_at=now + ttl)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


_PENDING = "kumulus_fence_confirms"  # session.info: (holding, time) confirmed by the commit


def install(sessions: sessionmaker[Session]) -> None:
    """Fence every commit of `sessions`' sessions made inside a leased job run."""
    event.listen(sessions, "before_commit", _fence)
    event.listen(sessions, "after_commit", _confirm)
    event.listen(sessions, "after_rollback", _forget)


def _fence(session: Session) -> None:
    hold = jobs.current_hold()
    if hold is None:
        return
    # The transaction's own writes first, so the lease row is the last lock it takes: a
    # commit of this run never waits for the lease row while holding a row another of
    # its threads (also about to fence) waits for.
    session.flush()
    asked = time.monotonic()
    if not renew(session, hold.name, hold.owner, hold.token, hold.ttl):
        hold.mark_lost()
        raise jobs.LeaseLostError(
            f"job {hold.name}: its lease moved to another process; this run's work is not committed"
        )
    session.info[_PENDING] = (hold, asked)


def _confirm(session: Session) -> None:
    # Committed: the renewal holds from when it was issued (jobs.check_lease(before_effect)).
    pending = session.info.pop(_PENDING, None)
    if pending is not None:
        hold, asked = pending
        hold.confirm(asked)


def _forget(session: Session) -> None:
    session.info.pop(_PENDING, None)
