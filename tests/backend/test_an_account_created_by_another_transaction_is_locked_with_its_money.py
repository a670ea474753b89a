"""`ledger.lock` creates a person's account that has no balance row after it has locked
the rows there are (creating every key up front cost each placement an INSERT probing
its developer's keys). An account that another transaction is creating at that moment
must then be waited for and locked as that transaction left it, with its money, not
taken for a new, empty account.

Here a developer's first deposit is being written (its transaction created the
developer's balance row and has not committed). A placement's lock of that developer's
balance comes meanwhile: it must wait, then hold the deposit. Taking the account for
empty would refuse the placement, or worse, write 0 over the deposit.

PostgreSQL only: on SQLite a transaction holds the database's write lock from its first
statement, so the second one starts after the first committed."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from kumulus.backend import ledger
from kumulus.backend.db import Database, migrate
from tests.backend.billing_fixtures import UNIT, account, waiting_for_a_lock


def _developer(db: Database) -> int:
    """A migrated database's new developer, with no balance row yet."""
    migrate(db.engine)
    with db.session() as s:
        dev_id = account(s, "developer").id
        s.commit()
    return dev_id


def test_a_lock_waits_for_an_account_being_created_and_holds_its_money(
    database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer: the second transaction starts after the first")
    db = Database(database_url)
    try:
        dev_id = _developer(db)
        developer = ledger.key_of(ledger.DEVELOPER, dev_id)
        with db.engine.connect() as conn, db.sessions(bind=conn) as locker:
            locker_pid = locker.scalar(text("SELECT pg_backend_pid()"))
            locker.commit()
            held: list[ledger.Locks] = []
            failures: list[BaseException] = []

            def lock() -> None:
                try:
                    held.append(ledger.lock(locker, [developer]))
                except BaseException as exc:  # reported below
                    failures.append(exc)

            with db.session() as depositor:
                ledger.transfer(
                    depositor, (ledger.CHAIN, None), (ledger.DEVELOPER, dev_id), UNIT, "deposit"
                )
                thread = threading.Thread(target=lock)
                thread.start()
                deadline = time.monotonic() + 10
                while not waiting_for_a_lock(db, locker_pid):
                    assert time.monotonic() < deadline, "the lock never waited for the deposit"
                    assert thread.is_alive(), f"the lock did not wait: {held or failures}"
                    time.sleep(0.02)
                depositor.commit()
            thread.join(30)
            assert not thread.is_alive()
            assert not failures, failures
            assert held[0][developer] == UNIT, "the deposit being written was taken for 0"
            assert not held[0].absent
            locker.rollback()
        with db.session() as s:
            assert ledger.balance(s, ledger.DEVELOPER, dev_id) == UNIT
    finally:
        db.engine.dispose()


def test_an_account_created_by_the_lock_holds_zero_and_is_written_in_place(
    database_url: str, tmp_path: Path
) -> None:
    db = Database(database_url)
    try:
        dev_id = _developer(db)
        with db.session() as s:
            developer = ledger.key_of(ledger.DEVELOPER, dev_id)
            locked = ledger.lock(s, [developer, ledger.key_of(ledger.CHAIN, None)])
            assert locked[developer] == 0 and not locked.absent
            ledger.post(
                s,
                locked,
                [
                    ledger.Leg(ledger.CHAIN, None, -UNIT, "deposit"),
                    ledger.Leg(ledger.DEVELOPER, dev_id, UNIT, "deposit"),
                ],
            )
            s.commit()
        with db.session() as s:
            assert ledger.balance(s, ledger.DEVELOPER, dev_id) == UNIT
    finally:
        db.engine.dispose()
