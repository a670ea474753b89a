"""A batch of placements on PostgreSQL reads hosts, balances and VMs through their indexes:
no statement of it plans a scan of a whole table. Its cost must not grow with the fleet or
with the number of accounts (a sequential scan of 5,000 hosts per batch was 4 ms of its
40 ms; the balance locks' scan of 13,000 balances another 4 ms, and both grow with the
platform). (Below a few thousand rows a scan is the cheaper plan, and PostgreSQL rightly
takes it: the test's platform has a past.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from bench.common import GIB
from bench.scheduler import Size, place_requests
from sqlalchemy import text

from kumulus.backend.vms import place_vms
from tests.backend.placement_fixtures import placing

_WHOLE_TABLE = re.compile(r"Seq Scan on (hosts|balances|vms)\b")


def test_a_placement_batch_scans_no_table(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("query plans are PostgreSQL's")
    size = Size(cpu=3.0, memory=12 * GIB, disk=200 * GIB)
    with placing(database_url, tmp_path, 2000, 200, size, 2600) as p:
        db, vm_ids = p.db, p.vms
        # Fill part of the fleet first: thousands of balances, hosts at every load.
        for start in range(0, 2500, 250):
            with db.session() as s:
                chunk = vm_ids[start : start + 250]
                out = p.place(s, chunk)
                assert all(isinstance(o, str) for o in out), out[:3]
                s.commit()
        with db.session() as s:
            # The hold accounts of 20,000 VMs of the past (every VM placed keeps its row):
            # a few thousand balances are cheaper to scan than to probe, and a platform
            # soon has far more.
            s.execute(
                text(
                    "INSERT INTO balances (account_type, account_key, amount) "
                    "SELECT 'hold', 'old-vm-' || n, 0 FROM generate_series(1, 20000) AS n"
                )
            )
            s.execute(text("ANALYZE hosts"))
            s.execute(text("ANALYZE balances"))
            s.commit()
        # The batch's statements as the driver was given them (through SQLAlchemy, or on
        # the driver's cursor: backend/db.driver_cursor), then each one's plan, in the same
        # order (so the settings a statement runs under apply to its plan) and in one
        # transaction that is rolled back: EXPLAIN without ANALYZE runs nothing.
        sent: list[tuple[str, Any]] = []
        execute = psycopg.Cursor.execute

        def record(cursor: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
            sent.append((query, params))
            return execute(cursor, query, params, **kwargs)

        with db.session() as s:
            batch = vm_ids[2500:2564]
            requests = place_requests(db, batch)
            monkeypatch.setattr(psycopg.Cursor, "execute", record)
            out = place_vms(p.settings, s, requests, [False] * len(requests))
            assert all(isinstance(o, str) for o in out), out[:3]
            s.flush()
            monkeypatch.undo()
            s.rollback()
        # Every kind of statement a batch runs was seen, whichever way it was sent.
        for part in ("FROM hosts", "UPDATE hosts", "FROM balances AS b", "FROM vms", "UPDATE vms"):
            assert any(part in statement for statement, _ in sent), part
        scans: list[str] = []
        with db.engine.connect() as conn:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            for statement, params in sent:
                if statement.startswith(("SET ", "RESET ")):
                    cursor.execute(statement, params)
                    continue
                if not statement.startswith(("SELECT", "UPDATE", "INSERT", "DELETE", "WITH")):
                    continue  # the pool's liveness check (";"), BEGIN and the like
                cursor.execute("EXPLAIN " + statement, params)
                plan = "\n".join(row[0] for row in cursor.fetchall())
                scans += [f"{m.group(0)}: {statement[:80]}" for m in _WHOLE_TABLE.finditer(plan)]
            conn.rollback()
        assert scans == []
