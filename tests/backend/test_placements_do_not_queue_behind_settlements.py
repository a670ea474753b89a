"""A placement locks only the accounts its hold moves money between: a transaction holding
the platform's balances (as every settlement of the meter job does) does not hold up
placements, and placements on several replicas do not queue behind each other there."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from bench.common import GIB
from bench.scheduler import TTL, Size, populate
from sqlalchemy import text

from kumulus.backend import ledger
from kumulus.backend.db import Database, migrate
from kumulus.backend.vms import PlaceRequest, place_vms
from kumulus.config import BackendSettings


def test_a_placement_goes_through_while_the_platform_balances_are_locked(
    database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: nothing runs beside a settlement")
    db = Database(database_url)
    try:
        migrate(db.engine)
        settings = BackendSettings(data_dir=tmp_path, database_url=database_url, heartbeat_ttl=TTL)
        suffix = secrets.token_hex(4)
        hosts = [f"b{suffix}{i:07d}" for i in range(10)]
        vm_ids = populate(db, suffix, hosts, 3, Size(cpu=1.0, memory=GIB, disk=10 * GIB), 6)
        with db.session() as settling:
            ledger.lock(settling, [ledger.key_of(ledger.PLATFORM, None),
                                   ledger.key_of(ledger.PLATFORM_PROMO, None)])  # fmt: skip

            def place() -> list[object]:
                with db.session() as s:
                    s.execute(text("SET LOCAL lock_timeout = '5s'"))
                    out = place_vms(settings, s, [PlaceRequest(i, frozenset()) for i in vm_ids],
                                    [False] * len(vm_ids))  # fmt: skip
                    s.commit()
                    return out

            with ThreadPoolExecutor(1) as pool:
                out = pool.submit(place).result(timeout=30)
            settling.rollback()
        assert all(isinstance(o, str) for o in out), out
    finally:
        db.engine.dispose()
