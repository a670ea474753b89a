"""A batch of placements on PostgreSQL reads hosts, balances and VMs through their indexes:
no statement of it reads a whole table. Its cost must not grow with the fleet or with the
number of accounts (a sequential scan of 5,000 hosts per batch was 4 ms of its 40 ms; the
balance locks' scan of 13,000 balances another 4 ms, and both grow with the platform)."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from bench.common import GIB
from bench.scheduler import TTL, Size, populate
from sqlalchemy import text

from kumulus.backend.db import Database, migrate
from kumulus.backend.vms import PlaceRequest, place_vms
from kumulus.config import BackendSettings

_SCANS = text(
    "SELECT relname, seq_scan FROM pg_stat_xact_user_tables"
    " WHERE relname IN ('hosts', 'balances', 'vms')"
)


def test_a_placement_batch_scans_no_table(database_url: str, tmp_path: Path) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("query plans are PostgreSQL's")
    db = Database(database_url)
    try:
        migrate(db.engine)
        settings = BackendSettings(data_dir=tmp_path, database_url=database_url, heartbeat_ttl=TTL)
        suffix = secrets.token_hex(4)
        hosts = [f"b{suffix}{i:07d}" for i in range(2000)]
        size = Size(cpu=3.0, memory=12 * GIB, disk=200 * GIB)
        vm_ids = populate(db, suffix, hosts, 200, size, 2600)
        # Fill part of the fleet first: thousands of balances, hosts at every load.
        for start in range(0, 2500, 250):
            with db.session() as s:
                chunk = vm_ids[start : start + 250]
                out = place_vms(settings, s, [PlaceRequest(i, frozenset()) for i in chunk],
                                [False] * len(chunk))  # fmt: skip
                assert all(isinstance(o, str) for o in out), out[:3]
                s.commit()
        with db.session() as s:
            s.execute(text("ANALYZE hosts"))
            s.execute(text("ANALYZE balances"))
            s.commit()
            batch = vm_ids[2500:2564]
            # The counters may hold this connection's earlier transactions not yet
            # reported (PostgreSQL sends them at most once a second): compare.
            before = dict(s.execute(_SCANS).tuples().all())
            out = place_vms(settings, s, [PlaceRequest(i, frozenset()) for i in batch],
                            [False] * len(batch))  # fmt: skip
            assert all(isinstance(o, str) for o in out), out[:3]
            s.flush()
            after = dict(s.execute(_SCANS).tuples().all())
            s.commit()
        scans = {table: after.get(table, 0) - before.get(table, 0) for table in after}
        assert scans == {"hosts": 0, "balances": 0, "vms": 0}
    finally:
        db.engine.dispose()
