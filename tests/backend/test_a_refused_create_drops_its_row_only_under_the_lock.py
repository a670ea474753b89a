"""A refused create drops its VM row under the developer's balance lock, which every
placement of the VM takes first: a retry of the same create placing that row meanwhile
keeps it (before, the DELETE could land while the placement was reserving a host and a
hold for the row; attack22)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from bench.common import GIB
from bench.scheduler import Size
from sqlalchemy import update
from substrateinterface import Keypair

from kumulus.backend import ledger
from kumulus.backend.models import VM
from kumulus.backend.vms import VMService
from kumulus.core.errors import ConflictError
from tests.backend.placement_fixtures import placing


def test_a_placement_in_progress_keeps_the_row(database_url: str, tmp_path: Path) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has one writer: the DELETE cannot come in between")
    with placing(database_url, tmp_path, 2, 1, Size(cpu=1.0, memory=GIB, disk=10 * GIB), 1) as p:
        vm_id = p.vms[0]
        outcome: list[BaseException] = []

        def refused_request() -> None:
            with p.db.session() as s:
                service = VMService(s, p.settings, Keypair.create_from_uri("//Alice"))

                def refuse(vm: VM, tried: set[str]) -> bool:
                    raise ConflictError("no provider fits", code="no_host_fits")

                service._place = refuse  # type: ignore[method-assign]
                vm = s.get(VM, vm_id)
                assert vm is not None
                try:
                    service._place_new(vm)
                except ConflictError as exc:
                    outcome.append(exc)

        with p.db.session() as placement:  # the retry's placement, under way
            account = placement.get(VM, vm_id).account_id  # type: ignore[union-attr]
            ledger.lock(placement, [ledger.key_of(ledger.DEVELOPER, account)])
            refusing = threading.Thread(target=refused_request)
            refusing.start()
            time.sleep(0.5)  # the refused request reaches its DELETE
            placed = placement.execute(
                update(VM).where(VM.id == vm_id).values(host_id=p.hosts[0], reserved=True)
            )
            assert placed.rowcount == 1  # type: ignore[attr-defined]
            placement.commit()
        refusing.join(timeout=30)
        assert outcome and outcome[0].error_code == "no_host_fits"
        with p.db.session() as s:
            vm = s.get(VM, vm_id)
            assert vm is not None and vm.reserved and vm.host_id == p.hosts[0]
