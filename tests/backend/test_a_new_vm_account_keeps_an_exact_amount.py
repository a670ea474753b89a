"""A VM's hold account created by its first write stores the amount exactly, however
large (a u128 of planck does not fit SQLite's 64-bit integers: amounts go through the
column's type, decimal text there), whether the posting is written at once or batched."""

from __future__ import annotations

from pathlib import Path

import pytest

from kumulus.backend import ledger, ledger_check
from kumulus.backend.db import Database, migrate
from tests.backend.billing_fixtures import account, post_hold

HUGE = 2**100 + 7


@pytest.mark.parametrize("batched", [False, True])
def test_a_huge_first_hold_is_stored_exactly(
    database_url: str, tmp_path: Path, batched: bool
) -> None:
    db = Database(database_url)
    try:
        migrate(db.engine)
        with db.session() as s:
            dev = account(s, "developer").id
            ledger.transfer(s, (ledger.CHAIN, None), (ledger.DEVELOPER, dev), HUGE, "deposit")
            s.commit()
            hold = (ledger.HOLD, f"vm-{dev}")
            locked = ledger.lock(s, [ledger.key_of(ledger.DEVELOPER, dev), hold])
            assert hold in locked.absent
            post_hold(s, locked, dev, hold[1], HUGE, batched)
            s.commit()
        with db.session() as s:
            assert ledger.balance(s, ledger.HOLD, dev, hold[1]) == HUGE
            assert ledger.balance(s, ledger.DEVELOPER, dev) == 0
            assert ledger_check.violations(s) == []
    finally:
        db.engine.dispose()
