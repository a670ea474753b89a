"""Two placement batches in flight at once (two replicas' placers) choose among different
hosts and neither waits for the other: a batch skips the hosts another one holds, as a
single placement skips them. When every batch read the same least loaded hosts, the
second one's reservations queued behind the first one's commit on those rows: with two
placer processes a third of their time went to that wait (bench/scheduler)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.common import GIB
from bench.scheduler import Size
from sqlalchemy import select, text

from kumulus.backend.models import VM
from tests.backend.placement_fixtures import placing


def test_a_second_batch_places_beside_an_uncommitted_one_without_waiting(
    database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer at a time: the second batch waits by design")
    size = Size(cpu=1.0, memory=GIB, disk=10 * GIB)
    # 40 developers: each batch its own (a developer's placements do queue on their funds).
    with placing(database_url, tmp_path, 200, 40, size, 40) as p:
        db, vm_ids = p.db, p.vms
        with db.session() as first, db.session() as second:
            out_first = p.place(first, vm_ids[:20])  # not committed: it holds its hosts
            assert all(isinstance(o, str) for o in out_first), out_first[:3]
            # Any wait on the first batch's rows fails the second one at once.
            second.execute(text("SET LOCAL lock_timeout = '200ms'"))
            out_second = p.place(second, vm_ids[20:])
            assert all(isinstance(o, str) for o in out_second), out_second[:3]
            second.commit()
            first.commit()
        # Every VM placed once, and no host shared between the two batches.
        assert not set(out_first) & set(out_second)
        with db.session() as s:
            placed = s.scalars(select(VM.host_id).where(VM.id.in_(vm_ids))).all()
        assert len([h for h in placed if h is not None]) == 40
