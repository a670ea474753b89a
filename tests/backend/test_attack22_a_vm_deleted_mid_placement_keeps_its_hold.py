"""A placement whose VM row is deleted while it places it must not commit a host
reservation and a prepaid hold for a VM that no longer exists.

`VMService._place_new` deletes a refused create's row without the VM's balance locks
(`DELETE ... WHERE host_id IS NULL AND NOT reserved`). A retry of the same create (same
idempotency key) may be placing that row at the same moment, in the placer's batch: it
read the row under the balance locks, reserved a host and posted the hold; the DELETE
commits before the batch writes its VM rows. The ORM's per-VM UPDATE used to notice the
row was gone (StaleDataError: the batch rolled back and the VM was refused as
`deleting`). `placed_vms.write`'s one UPDATE ... FROM json_to_recordset matches nothing
and says nothing: the batch commits the host's capacity and the developer's hold for a
VM row that is gone (the capacity is never released, the hold never returned) and the
request is told the VM was placed.

PostgreSQL only: on SQLite the placement holds the database's write lock from its
balance lock on, so the DELETE cannot come in between."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from bench.common import GIB
from bench.scheduler import Size
from sqlalchemy import delete, func, select

from kumulus.backend import vms as vms_module
from kumulus.backend.ledger import HOLD, HOLD_PROMO
from kumulus.backend.models import VM, Balance, Host
from tests.backend.placement_fixtures import placing


def test_a_vm_row_deleted_mid_batch_is_not_left_holding_money(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer: the DELETE cannot come in between")
    size = Size(cpu=1.0, memory=GIB, disk=10 * GIB)
    with placing(database_url, tmp_path, 4, 2, size, 3) as p:
        db, hosts, vm_ids = p.db, p.hosts, p.vms
        victim = vm_ids[1]
        real_place_many = vms_module.place_many

        def place_many_then_refused_request_deletes(*args: Any, **kwargs: Any) -> Any:
            out = real_place_many(*args, **kwargs)
            # The refused request of the same create drops its row, as _place_new does:
            # no balance lock, only "still unplaced" in the WHERE (committed: it is).
            with db.session() as other:
                gone = other.execute(
                    delete(VM)
                    .where(VM.id == victim, VM.host_id.is_(None), VM.reserved.is_(False))
                    .execution_options(synchronize_session=False)
                )
                other.commit()
                assert gone.rowcount == 1  # type: ignore[attr-defined]
            return out

        monkeypatch.setattr(vms_module, "place_many", place_many_then_refused_request_deletes)
        try:
            with db.session() as s:
                out = p.place(s, vm_ids, last=True)
                s.commit()
        except Exception:  # rolled back: nothing kept, which is fine
            out = None

        with db.session() as s:
            exists = s.get(VM, victim) is not None
            reserved_cpu = s.scalar(
                select(func.coalesce(func.sum(Host.reserved_cpu), 0)).where(Host.id.in_(hosts))
            )
            placed_cpu = s.scalar(
                select(func.coalesce(func.sum(VM.cpu), 0)).where(
                    VM.id.in_(vm_ids), VM.reserved.is_(True)
                )
            )
            held = s.scalar(
                select(func.coalesce(func.sum(Balance.amount), 0)).where(
                    Balance.account_type.in_((HOLD, HOLD_PROMO)), Balance.account_key == victim
                )
            )
        assert not exists
        # No capacity reserved for a VM that is not there, no money held for it.
        assert reserved_cpu == placed_cpu, (reserved_cpu, placed_cpu)
        assert held == 0, held
        # And the request for it was not told it was placed.
        assert out is None or not isinstance(out[1], str), out
