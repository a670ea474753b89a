"""A placement creates the VM's hold accounts it uses and no others: the `hold` row, with
its amount (even a free VM's, at 0: the meter job's accrual locks hold rows alone), and a
`hold_promo` row only when promotional credit is held. Every placement used to insert
both rows at 0, lock them, then update one: a third of a placement's database time, and
a `hold_promo` row per VM that only ever held 0. The ledger's invariant holds throughout."""

from __future__ import annotations

from pathlib import Path

from bench.common import GIB
from bench.scheduler import Size
from sqlalchemy import select, update

from kumulus.backend import ledger, ledger_check
from kumulus.backend.models import VM, Balance, Host
from tests.backend.placement_fixtures import Placing, placing

SIZE = Size(cpu=1.0, memory=GIB, disk=10 * GIB)


def _holds(p: Placing, vm_id: str) -> dict[str, int]:
    with p.db.session() as s:
        rows = s.execute(
            select(Balance.account_type, Balance.amount).where(
                Balance.account_type.in_((ledger.HOLD, ledger.HOLD_PROMO)),
                Balance.account_key == vm_id,
            )
        )
        return {t: int(a) for t, a in rows}


def _place(p: Placing, ids: list[str]) -> None:
    with p.db.session() as s:
        out = p.place(s, ids)
        assert all(isinstance(o, str) for o in out), out
        s.commit()
    with p.db.session() as s:
        assert ledger_check.violations(s) == []


def test_a_vm_paid_in_cash_has_a_hold_row_and_no_promo_row(
    database_url: str, tmp_path: Path
) -> None:
    with placing(database_url, tmp_path, 4, 2, SIZE, 2) as p:
        _place(p, p.vms)
        for vm_id in p.vms:
            holds = _holds(p, vm_id)
            assert set(holds) == {ledger.HOLD}, holds
            assert holds[ledger.HOLD] > 0


def test_promotional_credit_opens_the_promo_hold(database_url: str, tmp_path: Path) -> None:
    with placing(database_url, tmp_path, 4, 1, SIZE, 1) as p:
        with p.db.session() as s:
            owner = s.scalar(select(VM.account_id).where(VM.id == p.vms[0]))
            ledger.transfer(s, (ledger.PLATFORM_PROMO, None), (ledger.PROMO, owner), 7, "grant")
            s.commit()
        _place(p, p.vms)
        holds = _holds(p, p.vms[0])
        assert holds[ledger.HOLD_PROMO] == 7  # promotional credit first
        assert holds[ledger.HOLD] > 0


def test_a_free_vm_still_has_its_hold_row(database_url: str, tmp_path: Path) -> None:
    with placing(database_url, tmp_path, 4, 1, SIZE, 1) as p:
        with p.db.session() as s:
            s.execute(
                update(Host)
                .where(Host.id.in_(p.hosts))
                .values(price_cpu_hour=0, price_memory_gib_hour=0, price_disk_gib_hour=0)
            )
            s.commit()
        _place(p, p.vms)
        assert _holds(p, p.vms[0]) == {ledger.HOLD: 0}
