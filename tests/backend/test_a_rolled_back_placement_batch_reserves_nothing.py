"""A placement batch's reservations are part of the caller's transaction: rolled back,
no host keeps any. On SQLite the reserving UPDATE used to start with a CTE (`WITH v AS
(...) UPDATE hosts ...`), and Python's sqlite3 opens a transaction only before a
statement that starts with INSERT, UPDATE, DELETE or REPLACE: the reservations were
committed at once, and a batch that failed after them leaked its hosts' capacity."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from kumulus.backend.batch_placement import place_many
from kumulus.backend.models import Host
from kumulus.backend.scheduler import Placement, Want
from tests.backend.test_grouped_placements_never_overcommit import _hosts

GIB = 1 << 30


def test_a_rolled_back_batch_leaves_every_host_as_it_was(backend: TestClient) -> None:
    ids = _hosts(backend, 3, price_cpu_hour=0)
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        outcomes = place_many(db, [Want(cpu=0.5, memory=GIB, disk=GIB)] * 4, 60.0)
        assert all(isinstance(o, Placement) for o in outcomes), outcomes
        db.rollback()
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        hosts = list(db.scalars(select(Host).where(Host.id.in_(ids))))
        assert [(h.reserved_cpu, h.reserved_memory, h.reserved_disk) for h in hosts] == [
            (0.0, 0, 0)
        ] * 3
