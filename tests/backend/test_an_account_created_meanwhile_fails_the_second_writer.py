"""A VM's hold account that has no row is locked as absent (holding 0) and created by the
first write to it. Two transactions that both found it absent cannot both create it: the
second one's write fails (LedgerError, nothing of it kept) instead of overwriting the
first one's balance, and the ledger's invariant holds. (Everything that posts to a VM's
holds also locks its developer's balance, so this does not happen in the backend; the
ledger does not rely on it.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from kumulus.backend import ledger, ledger_check
from kumulus.backend.db import Database, migrate
from kumulus.backend.models import Balance
from tests.backend.billing_fixtures import account, post_hold

HOLD = (ledger.HOLD, "vm-created-twice")


def _fund(db: Database) -> list[int]:
    with db.session() as s:
        devs = [account(s, "developer").id for _ in range(2)]
        for dev in devs:
            ledger.transfer(s, (ledger.CHAIN, None), (ledger.DEVELOPER, dev), 100, "deposit")
        s.commit()
    return devs


def _hold(s: Session, dev: int, amount: int, batched: bool) -> None:
    locked = ledger.lock(s, [ledger.key_of(ledger.DEVELOPER, dev), HOLD])
    assert HOLD in locked.absent and locked[HOLD] == 0
    post_hold(s, locked, dev, HOLD[1], amount, batched)


@pytest.mark.parametrize("batched", [False, True])
def test_the_second_creation_of_an_account_fails(
    database_url: str, tmp_path: Path, batched: bool
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: the second one waits for the first")
    db = Database(database_url)
    try:
        migrate(db.engine)
        first_dev, second_dev = _fund(db)
        with db.session() as first, db.session() as second:
            _hold(first, first_dev, 30, batched)
            # The second found no row either (the first has not committed).
            locked = ledger.lock(second, [ledger.key_of(ledger.DEVELOPER, second_dev), HOLD])
            assert HOLD in locked.absent
            first.commit()
            with pytest.raises(ledger.LedgerError, match="created or removed"):
                post_hold(second, locked, second_dev, HOLD[1], 50, batched)
            second.rollback()
        with db.session() as s:
            held = s.scalar(
                select(Balance.amount).where(
                    Balance.account_type == HOLD[0], Balance.account_key == HOLD[1]
                )
            )
            assert held == 30  # the first creation's, not overwritten
            assert ledger.balance(s, ledger.DEVELOPER, second_dev) == 100  # nothing taken
            assert ledger_check.violations(s) == []
    finally:
        db.engine.dispose()
