"""Exclusive job leases on the database (SQLite and PostgreSQL) are short and renewed while
their run goes on: a holder that stops renewing (killed) is replaced within about one lease
ttl, a run longer than many ttls keeps its lease, and a holder whose lease was taken over
commits nothing and stops."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import select

from kumulus.backend import leases
from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database, migrate
from kumulus.backend.jobs.lease import DbLease
from kumulus.backend.models import SettlementState
from kumulus.core.jobs import Job, JobRunner, LeaseLostError, check_lease
from tests.overlap import OverlapProbe

TTL = 0.6  # renewed every 0.2 s


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    migrate(database.engine)
    yield database
    database.engine.dispose()


def _wait_for(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _write(db: Database, name: str) -> None:
    """A write of the job's, committed (fenced when made inside a leased run)."""
    with db.session() as s:
        s.add(SettlementState(name=name, value="x", since=utcnow()))
        s.commit()


def _written(db: Database) -> set[str]:
    with db.session() as s:
        return set(s.scalars(select(SettlementState.name)))


def test_a_killed_holders_lease_is_taken_over_within_its_ttl(db: Database) -> None:
    with db.session() as s:  # a replica took the lease, then died: no renewal, no release
        assert leases.acquire(s, "work", "dead-replica", TTL) is not None
    killed = time.monotonic()
    ran = threading.Event()
    runner = JobRunner(
        [Job("work", 0.02, 30, ran.set, lease=DbLease(db), lease_ttl=TTL, run_at_start=True)]
    )
    runner.start()
    try:
        assert ran.wait(10)
        taken_after = time.monotonic() - killed
    finally:
        runner.stop(timeout=5)
    assert TTL * 0.8 <= taken_after <= TTL + 1.0, taken_after
    assert runner.stats()["work"].skipped >= 1  # it was asked while the dead one held it


def test_a_run_longer_than_many_ttls_keeps_its_lease(db: Database) -> None:
    lease = DbLease(db)
    probe = OverlapProbe(hold=5 * TTL)

    runs = itertools.count(1)

    def long_run() -> None:
        probe()
        # Its commit at the end is still under its own lease. A name per run: the job runs
        # again (every 0.02 s) until the runners stop.
        _write(db, f"long-run-{next(runs)}")

    runners = [
        JobRunner(
            [
                Job(
                    "work",
                    0.02,
                    30,
                    long_run,
                    lease=lease,
                    lease_ttl=TTL,
                    run_at_start=True,
                )
            ]
        )
        for _ in range(2)
    ]
    for runner in runners:
        runner.start()
    try:
        _wait_for(lambda: probe.runs >= 1 and "long-run-1" in _written(db))
    finally:
        for runner in runners:
            runner.stop(timeout=10)
    assert probe.most == 1  # the other runner never got in while the run went on
    stats = [runner.stats()["work"] for runner in runners]
    assert sum(s.skipped for s in stats) >= 10
    assert sum(s.leases_lost + s.failures for s in stats) == 0


class _Partitioned(DbLease):
    """A holder's lease store that it cannot reach while `away` is set (a network
    partition, a paused process): its renewals fail, its lease lapses."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.away = threading.Event()

    def renew(self, name: str, owner: str, token: int, ttl: float) -> bool:
        if self.away.is_set():
            raise ConnectionError("database unreachable")
        return super().renew(name, owner, token, ttl)


def test_a_holder_that_lost_its_lease_commits_nothing_and_stops(db: Database) -> None:
    partitioned = _Partitioned(db)
    taken_over = threading.Event()
    seen: list[str] = []

    def old_holder() -> None:
        partitioned.away.set()  # from here on its renewals fail
        assert taken_over.wait(10)  # the other replica took the job over
        try:
            _write(db, "old-holder")
        except LeaseLostError:
            seen.append("commit refused")
        partitioned.away.clear()  # back: its next renewal finds the lease moved on
        for _ in range(500):  # a long job: checks its lease between steps
            check_lease()
            time.sleep(0.01)
        seen.append("went on")

    def new_holder() -> None:
        _write(db, "new-holder")
        taken_over.set()

    old = JobRunner([Job("work", 60, 30, old_holder, lease=partitioned, lease_ttl=TTL)])
    new = JobRunner(
        [Job("work", 0.02, 30, new_holder, lease=DbLease(db), lease_ttl=TTL, run_at_start=True)]
    )
    runner_thread = threading.Thread(target=lambda: _run_expecting_loss(old))
    runner_thread.start()
    _wait_for(lambda: old.stats()["work"].running)
    new.start()
    try:
        runner_thread.join(15)
        assert not runner_thread.is_alive()
    finally:
        new.stop(timeout=5)
    assert seen == ["commit refused"]  # and it stopped at its next step
    assert _written(db) == {"new-holder"}
    stats = old.stats()["work"]
    assert (stats.leases_lost, stats.failures) == (1, 1)
    assert stats.last_error is not None and stats.last_error.startswith("LeaseLostError")


def _run_expecting_loss(runner: JobRunner) -> None:
    with pytest.raises(LeaseLostError):
        runner.run_now("work")
