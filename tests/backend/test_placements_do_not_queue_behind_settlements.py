"""A placement locks only the accounts its hold moves money between: a transaction holding
the platform's balances (as every settlement of the meter job does) does not hold up
placements, and placements on several replicas do not queue behind each other there."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from bench.common import GIB
from bench.scheduler import Size
from sqlalchemy import text

from kumulus.backend import ledger
from tests.backend.placement_fixtures import placing


def test_a_placement_goes_through_while_the_platform_balances_are_locked(
    database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: nothing runs beside a settlement")
    with placing(database_url, tmp_path, 10, 3, Size(cpu=1.0, memory=GIB, disk=10 * GIB), 6) as p:
        db, vm_ids = p.db, p.vms
        with db.session() as settling:
            ledger.lock(settling, [ledger.key_of(ledger.PLATFORM, None),
                                   ledger.key_of(ledger.PLATFORM_PROMO, None)])  # fmt: skip

            def place() -> list[object]:
                with db.session() as s:
                    s.execute(text("SET LOCAL lock_timeout = '5s'"))
                    out = p.place(s, vm_ids)
                    s.commit()
                    return out

            with ThreadPoolExecutor(1) as pool:
                out = pool.submit(place).result(timeout=30)
            settling.rollback()
        assert all(isinstance(o, str) for o in out), out
