"""The meter job's first step (VMs that only accrue usage, settled under their hold locks
alone, as plain rows) writes exactly what the full path writes for the same VMs (every
balance locked) and what settling each VM alone writes: the same VM fields, balances and
ledger entries. VMs that need more (a posting due, a hold to renew) are left to the full
path by the first step and end up the same too.

Three identical sets of VMs in one database: A through `meter.meter_ids` (both steps), B
through `meter._settle_chunk` (the full path only), C one VM at a time through
`billing.settle`."""

from __future__ import annotations

from dataclasses import astuple
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from kumulus.backend import billing, ledger
from kumulus.backend.clock import aware, utcnow
from kumulus.backend.jobs import meter
from kumulus.backend.models import VM, Balance, LedgerEntry
from tests.backend.billing_fixtures import UNIT, account, host, placed

TERMS = billing.Terms(fee_bps=1000, window=600, post_every=3600, unfunded_grace=3600)

# (funded by, host online, intended state, milliseconds since last metered, seconds since
#  posted, only accrues)
SPECS = [
    ("cash", True, "running", 15_000, 100, True),
    ("cash", True, "running", 15_123, 100, True),  # leaves a sub-planck carry
    ("cash", False, "running", 15_000, 100, True),  # host offline: disk only
    ("cash", True, "stopped", 15_000, 100, True),  # disk only
    ("promo", True, "running", 15_000, 100, True),  # a hold of promotional credit
    ("cash", True, "running", 0, 100, True),  # metered just now: nothing to add
    ("cash", True, "running", 15_000, 4000, False),  # posting due by the hour
    ("cash", True, "running", 400_000, 500, False),  # more than half the hold used: renew
]
STEADY = sum(1 for spec in SPECS if spec[-1])


def _build(db: Session, now: datetime) -> tuple[list[VM], dict[int, str]]:
    """One set: its VMs in SPECS order and a label for each of its account ids."""
    prov = account(db, "provider")
    online, offline = host(db, prov), host(db, prov, online=False)
    cash, promo = account(db, "developer"), account(db, "developer")
    ledger.transfer(db, (ledger.CHAIN, None), (ledger.DEVELOPER, cash.id), 10 * UNIT, "deposit")
    billing.grant_promo(db, promo.id, UNIT, "sign-up credit")
    db.commit()
    devs = {"cash": cash, "promo": promo}
    vms = []
    for funded_by, is_online, state, metered_ms, posted_s, _ in SPECS:
        row = placed(db, devs[funded_by], online if is_online else offline, now, TERMS)
        row.intended_state = row.actual_state = state
        row.metered_until = now - timedelta(milliseconds=metered_ms)
        row.posted_at = now - timedelta(seconds=posted_s)
        vms.append(row)
    db.commit()
    return vms, {prov.id: "provider", cash.id: "cash", promo.id: "promo"}


def _ledger(db: Session, vm: VM, labels: dict[int, str]) -> list[tuple[Any, ...]]:
    rows = db.scalars(
        select(LedgerEntry).where(LedgerEntry.vm_id == vm.id).order_by(LedgerEntry.id)
    )
    return [
        (e.account_type, labels.get(e.account_id or 0), int(e.amount), e.kind, e.memo) for e in rows
    ]


def _balances(db: Session, vms: list[VM], labels: dict[int, str]) -> dict[tuple[str, str], int]:
    keys = {str(i): label for i, label in labels.items()}
    keys.update({vm.id: f"vm{n}" for n, vm in enumerate(vms)})
    rows = db.execute(select(Balance.account_type, Balance.account_key, Balance.amount))
    return {(t, keys[k]): int(a) for t, k, a in rows if k in keys}


def _fields(vm: VM) -> tuple[Any, ...]:
    return tuple(
        aware(v) if isinstance(v, datetime) else v
        for v in (getattr(vm, name) for name in meter.METERED_FIELDS)
    )


def test_accrual_on_hold_locks_writes_what_the_full_path_writes(backend: TestClient) -> None:
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    now = utcnow()
    with db_.session() as db:
        sets = [_build(db, now) for _ in range(3)]
        (a, labels_a), (b, labels_b), (c, labels_c) = sets
        entries_before = {vm.id: len(_ledger(db, vm, {})) for vm in a}

        two_steps = meter.MeterReport()
        meter.meter_ids(db, sorted(vm.id for vm in a), TERMS, now, two_steps)
        full = meter.MeterReport()
        meter._settle_chunk(db, sorted(vm.id for vm in b), TERMS, now, full)
        alone = meter.MeterReport()
        for vm_id in sorted(vm.id for vm in c):
            row = db.get(VM, vm_id)
            assert row is not None
            out = billing.settle(db, row, TERMS, now)
            db.commit()
            meter._count(row, out, alone)

        # The first step took exactly the VMs that only accrue; the others were posted.
        assert two_steps.accrued_only == STEADY and full.accrued_only == 0
        assert two_steps.posted == len(SPECS) - STEADY
        two_steps.accrued_only = 0
        assert astuple(two_steps) == astuple(full) == astuple(alone)

        db.expire_all()
        for n, spec in enumerate(SPECS):
            assert _fields(a[n]) == _fields(b[n]) == _fields(c[n]), spec
            ledger_a = _ledger(db, a[n], labels_a)
            assert ledger_a == _ledger(db, b[n], labels_b) == _ledger(db, c[n], labels_c), spec
            if spec[-1]:  # accrual moves no money: nothing new in the ledger
                assert len(ledger_a) == entries_before[a[n].id], spec
                assert aware(a[n].metered_until) == now, spec  # type: ignore[arg-type]
        assert _balances(db, a, labels_a) == _balances(db, b, labels_b)
        assert _balances(db, a, labels_a) == _balances(db, c, labels_c)
        # Something was accrued (the equalities above are not all zeros).
        assert two_steps.charged > 0 and any(vm.accrued > 0 for vm in a[:STEADY])
