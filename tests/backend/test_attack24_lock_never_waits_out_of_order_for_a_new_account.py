"""`ledger.lock` takes every balance in one sorted order, so that two transactions never
wait for each other. Since it first locks the rows there are and only then creates the
accounts that had none, an account another transaction created in between was locked
last, out of order, while this transaction held the rows sorted after it: a deadlock.

The attack, on PostgreSQL, with three developer accounts b < c < d (c exists, b and d do
not yet):

- T2 is creating b and T6 is creating d (their first postings, not committed);
- T1 locks b, c, d: it locks c, then its INSERT of b and d waits for T2 and then for T6;
- T2 commits: T1 still waits for T6;
- T3 locks b and c: b now exists; it locks b, then waits for c (T1 holds it);
- T6 commits: T1 now locks b, which T3 holds. T1 waits for T3, T3 for T1.

PostgreSQL breaks the cycle by aborting one of them (deadlock detected): a placement
batch, or a meter chunk, failed for nothing. Taking the locks in one sorted order, as
everywhere else, T3 gets b and c and T1 waits for T3's commit.

PostgreSQL only: on SQLite a transaction holds the database's write lock from its first
statement."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from kumulus.backend import ledger
from kumulus.backend.db import Database, migrate
from tests.backend.billing_fixtures import account


def _blocked_by(db: Database, pid: int) -> list[int]:
    with db.session() as s:
        return list(s.scalar(text("SELECT pg_blocking_pids(:p)"), {"p": pid}) or [])


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 15
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


class _Locker(threading.Thread):
    """A transaction that locks `keys` on its own connection, then holds the locks until
    `release` is set."""

    def __init__(self, db: Database, keys: list[ledger.Key]) -> None:
        super().__init__(daemon=True)
        self.db, self.keys = db, keys
        self.release = threading.Event()
        self.locked: ledger.Locks | None = None
        self.failure: BaseException | None = None
        self.pid = 0
        self.ready = threading.Event()

    def run(self) -> None:
        with self.db.engine.connect() as conn, self.db.sessions(bind=conn) as s:
            self.pid = int(s.scalar(text("SELECT pg_backend_pid()")) or 0)
            s.commit()
            self.ready.set()
            try:
                self.locked = ledger.lock(s, self.keys)
            except BaseException as exc:  # reported by the test
                self.failure = exc
            self.release.wait(30)
            s.rollback()


def test_a_lock_meeting_a_new_account_keeps_the_sorted_order(
    database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer: the second transaction starts after the first")
    db = Database(database_url)
    lockers: list[_Locker] = []
    try:
        migrate(db.engine)
        with db.session() as s:
            ids = [account(s, "developer").id for _ in range(3)]
            s.commit()
        b, c, d = sorted(ledger.key_of(ledger.DEVELOPER, i) for i in ids)
        with db.session() as s:  # c exists; b and d do not
            ledger.lock(s, [c])
            s.commit()
        with db.session() as t2, db.session() as t6:
            ledger.lock(t2, [b])  # creating b
            ledger.lock(t6, [d])  # creating d
            t6_pid = t6.scalar(text("SELECT pg_backend_pid()"))
            t1 = _Locker(db, [b, c, d])
            lockers.append(t1)
            t1.start()
            t1.ready.wait(10)
            _until(lambda: bool(_blocked_by(db, t1.pid)), "T1 never waited for b's creator")
            t2.commit()
            _until(lambda: _blocked_by(db, t1.pid) == [t6_pid], "T1 never waited for d's")
            t3 = _Locker(db, [b, c])
            lockers.append(t3)
            t3.start()
            t3.ready.wait(10)
            _until(
                lambda: (
                    t3.locked is not None or t3.failure is not None or bool(_blocked_by(db, t3.pid))
                ),
                "T3 neither locked nor waited",
            )
            t6.commit()
        # T1 now wants b. In the sorted order T3 holds b and c, and T1 waits for T3:
        # give PostgreSQL's deadlock detector (deadlock_timeout, 1 s) time to look.
        time.sleep(2.5)
        assert t1.failure is None and t3.failure is None, (t1.failure, t3.failure)
        t3.release.set()
        t3.join(30)
        t1.release.set()
        t1.join(30)
        assert t1.failure is None and t3.failure is None, (t1.failure, t3.failure)
        assert t1.locked is not None and t3.locked is not None
        assert dict(t1.locked) == dict.fromkeys((b, c, d), 0)
        assert dict(t3.locked) == dict.fromkeys((b, c), 0)
    finally:
        for locker in lockers:
            locker.release.set()
            locker.join(30)
        db.engine.dispose()
