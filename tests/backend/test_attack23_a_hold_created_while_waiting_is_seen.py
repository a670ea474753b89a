"""A VM's hold account created by the transaction a lock waited for must be seen by the
lock: deciding on it as "absent, holding 0" loses the money it holds.

`ledger.lock` no longer creates a VM's own accounts (`hold`, `hold_promo`): it locks
every row there is in one statement and reports the others absent, holding 0. On
PostgreSQL that statement reads the rows as of its start (READ COMMITTED: one snapshot
per statement). When it has to wait for a row lock (the developer's balance) held by a
transaction that is creating one of the VM's hold rows, the row that transaction commits
is not in the statement's snapshot (its INSERT of the missing accounts does not wait: the
other transaction had only locked them, not written them yet): once the lock is granted,
the account is reported absent although it exists, and everything decided under the lock
takes it for 0.

Before, `lock` inserted every missing row first (INSERT ... ON CONFLICT DO NOTHING, which
waits for a concurrent insert of the same key) and its locking SELECT started after that
insert returned, so it saw the row.

Here: a developer's VM holds deposits only (no `hold_promo` row). The developer is given
promotional credit and the meter tops the VM's hold up from it (promotional credit first:
the VM's `hold_promo` row is created holding it). At the same moment the developer
deletes the VM: its settlement locks the VM's balances, waits for the top-up, then sees
no promotional hold and releases only the deposit-funded one. The promotional credit
stays in the hold of a deleted VM, which nothing ever settles again: the developer lost
it.

PostgreSQL only: on SQLite a transaction holds the database's write lock from its first
statement, so the second one starts after the first committed."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from kumulus.backend import billing, ledger
from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database, migrate
from kumulus.backend.models import VM
from tests.backend.billing_fixtures import UNIT, account, host, placed, waiting_for_a_lock

TERMS = billing.Terms(fee_bps=1000, window=600)
PROMO_CREDIT = UNIT // 100


def test_a_delete_racing_a_promotional_top_up_returns_the_whole_hold(
    database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer: the second transaction starts after the first")
    db = Database(database_url)
    try:
        migrate(db.engine)
        with db.session() as s:
            prov, dev = account(s, "provider"), account(s, "developer")
            ledger.transfer(s, (ledger.CHAIN, None), (ledger.DEVELOPER, dev.id), UNIT, "deposit")
            on = host(s, prov)
            machine = placed(s, dev, on, utcnow() - timedelta(minutes=1), TERMS)
            vm_id, dev_id = machine.id, dev.id
            assert ledger.balance(s, ledger.HOLD_PROMO, dev_id, vm_id) == 0
            billing.grant_promo(s, dev_id, PROMO_CREDIT, "sign-up credit")
            s.commit()

        with db.engine.connect() as conn, db.sessions(bind=conn) as deleter_session:
            deleter_pid = deleter_session.scalar(text("SELECT pg_backend_pid()"))
            doomed = deleter_session.get(VM, vm_id)
            assert doomed is not None
            deleter_session.commit()
            failures: list[BaseException] = []

            def delete() -> None:
                # What VMService.delete does: settle the VM to "deleted" (everything it
                # holds beyond its usage goes back to the developer), in one transaction.
                try:
                    billing.settle(deleter_session, doomed, TERMS, to_state="deleted")
                    deleter_session.commit()
                except BaseException as exc:  # reported below
                    failures.append(exc)

            with db.session() as meter:
                # The meter's top-up: the VM's balances locked, its hold funded from the
                # developer's promotional credit first (its hold_promo row is created now).
                topping = meter.get(VM, vm_id)
                assert topping is not None
                locked, _ = billing.lock_vms(meter, [topping])
                # The delete comes now: it waits for the meter's locks (the meter job's
                # chunk decides 500 VMs' money between its lock and its writes).
                deleter = threading.Thread(target=delete)
                deleter.start()
                deadline = time.monotonic() + 10
                while not waiting_for_a_lock(db, deleter_pid):
                    assert time.monotonic() < deadline, "the delete never waited for the lock"
                    time.sleep(0.02)
                assert billing.fund(meter, topping, locked, PROMO_CREDIT) == 0
                meter.commit()
            deleter.join(30)
            assert not deleter.is_alive()
            assert not failures, failures

        with db.session() as s:
            gone = s.get(VM, vm_id)
            assert gone is not None and gone.intended_state == "deleted"
            stuck_promo = ledger.balance(s, ledger.HOLD_PROMO, dev_id, vm_id)
            stuck_cash = ledger.balance(s, ledger.HOLD, dev_id, vm_id)
            # A deleted VM holds nothing: what it held is the developer's again.
            assert (stuck_promo, stuck_cash) == (0, 0), (
                f"a deleted VM still holds {stuck_promo} planck of promotional credit and "
                f"{stuck_cash} of deposits"
            )
    finally:
        db.engine.dispose()
