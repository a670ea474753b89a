"""The VM rows a batch of placements finishes are written with one UPDATE on PostgreSQL
(not one per VM), hold what the placement decided, and are not written again at commit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.common import GIB
from bench.scheduler import Size
from sqlalchemy import event, select

from kumulus.backend.models import VM, Host
from tests.backend.placement_fixtures import placing


def test_placed_rows_are_written_once_and_right(database_url: str, tmp_path: Path) -> None:
    size = Size(cpu=1.0, memory=GIB, disk=10 * GIB)
    with placing(database_url, tmp_path, 40, 10, size, 30) as p:
        db, hosts, vm_ids = p.db, p.hosts, p.vms
        updates: list[tuple[str, bool]] = []

        def seen(conn: Any, cursor: Any, statement: str, params: Any, ctx: Any, many: bool) -> None:
            if statement.lstrip().upper().startswith("UPDATE VMS"):
                updates.append((statement, many))

        event.listen(db.engine, "before_cursor_execute", seen)
        with db.session() as s:
            out = p.place(s, vm_ids)
            s.commit()
        event.remove(db.engine, "before_cursor_execute", seen)
        assert all(isinstance(o, str) for o in out)
        postgres = database_url.startswith("postgresql")
        # SQLite: one executemany (no round trips to save there).
        assert len(updates) == 1, updates
        assert updates[0][1] is not postgres
        with db.session() as s:
            rows = {vm.id: vm for vm in s.scalars(select(VM).where(VM.id.in_(vm_ids)))}
            prices = {
                h.id: (h.price_cpu_hour, h.price_memory_gib_hour, h.price_disk_gib_hour)
                for h in s.scalars(select(Host).where(Host.id.in_(hosts)))
            }
        for vm_id, host_id in zip(vm_ids, out, strict=True):
            vm = rows[vm_id]
            assert vm.host_id == host_id and vm.reserved and vm.actual_state == "pending"
            assert (vm.price_cpu_hour, vm.price_memory_gib_hour, vm.price_disk_gib_hour) == prices[
                host_id
            ]
            assert vm.converge_after is not None and vm.converge_attempts == 0
            assert vm.failure_reason is None
