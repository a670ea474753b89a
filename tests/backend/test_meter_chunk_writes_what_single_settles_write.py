"""The meter job's chunk path (postings collected and written once per chunk, VM fields in
one executemany per set of changed fields) writes exactly what settling each VM alone
writes: the same ledger entries, the same balances, the same VM fields, the same outcomes.

Two identical sets of developers, a provider and VMs in one database: set A is metered
through `jobs.meter._settle_chunk`, set B one VM at a time through `billing.settle` (each
its own lock and commit), in the same order. The VMs cover accrual only, posting due by the
hour, hold renewal, funds running out (stopped for funds), promotional credit, an offline
host, several VMs sharing one developer's funds, and an unfunded stopped VM past its grace
period."""

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

# (developer, host online, intended state, seconds since last metered, seconds since posted,
#  seconds unfunded)
SPECS = [
    ("rich", True, "running", 15, 100, None),  # accrual only
    ("rich", True, "running", 15, 4000, None),  # posting due by the hour
    ("rich", True, "running", 400, 500, None),  # more than half the hold used: renewal
    ("rich", False, "running", 400, 500, None),  # host offline: disk only
    ("poor", True, "running", 400, 500, None),  # renewal the funds cannot cover
    ("poor", True, "running", 400, 500, None),  # the same developer's next VM
    ("promo", True, "running", 400, 500, None),  # promotional credit first
    ("promo", True, "stopped", 400, 4000, None),
    ("broke", True, "stopped", 5 * 3600, 7200, 7200),  # hold used up, past the grace period
]


def _build(db: Session, t0: datetime, now: datetime) -> tuple[list[VM], dict[int, str]]:
    """One set: its VMs in SPECS order and a label for each of its account ids."""
    prov = account(db, "provider")
    online, offline = host(db, prov), host(db, prov, online=False)
    devs = {name: account(db, "developer") for name in ("rich", "poor", "promo", "broke")}
    labels = {prov.id: "provider", **{dev.id: name for name, dev in devs.items()}}
    hold = billing.hold_for(42 * UNIT // 1000, 600)  # one VM's, at 0.042 per hour
    # poor: two holds and enough to renew one; broke: one hold, nothing more.
    funds = {"rich": 10 * UNIT, "poor": 20 * UNIT // 1000, "promo": UNIT // 1000, "broke": hold}
    for name, dev in devs.items():
        ledger.transfer(db, (ledger.CHAIN, None), (ledger.DEVELOPER, dev.id), funds[name], "d")
    billing.grant_promo(db, devs["promo"].id, UNIT // 50, "sign-up credit")
    db.commit()
    vms = []
    for dev, is_online, state, metered, posted, unfunded in SPECS:
        row = placed(db, devs[dev], online if is_online else offline, t0, TERMS)
        row.intended_state = row.actual_state = state
        row.metered_until = now - timedelta(seconds=metered)
        row.posted_at = now - timedelta(seconds=posted)
        if unfunded is not None:
            row.unfunded_since = now - timedelta(seconds=unfunded)
        vms.append(row)
    db.commit()
    return vms, labels


def _ledger(db: Session, vm: VM, labels: dict[int, str]) -> list[tuple[Any, ...]]:
    rows = db.scalars(
        select(LedgerEntry).where(LedgerEntry.vm_id == vm.id).order_by(LedgerEntry.id)
    )
    return [
        (e.account_type, labels.get(e.account_id or 0), int(e.amount), e.kind, e.memo) for e in rows
    ]


def _balances(db: Session, vms: list[VM], labels: dict[int, str]) -> dict[tuple[str, str], int]:
    """Every balance of the set, keyed by account type and label (a VM by its position)."""
    keys = {str(i): label for i, label in labels.items()}
    keys.update({vm.id: f"vm{n}" for n, vm in enumerate(vms)})
    rows = db.execute(select(Balance.account_type, Balance.account_key, Balance.amount))
    return {(t, keys[k]): int(a) for t, k, a in rows if k in keys}


def _fields(vm: VM) -> tuple[Any, ...]:
    return tuple(
        aware(v) if isinstance(v, datetime) else v
        for v in (getattr(vm, name) for name in meter.METERED_FIELDS)
    )


def test_a_chunk_writes_what_settling_each_vm_alone_writes(backend: TestClient) -> None:
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    now = utcnow()
    t0 = now - timedelta(hours=3)
    with db_.session() as db:
        chunked, labels_a = _build(db, t0, now)
        alone, labels_b = _build(db, t0, now)
        # The chunk settles in id order: settle the twins alone in that same order (VMs of
        # one developer share its funds, so the order decides which one is stopped).
        pairs = sorted(zip(chunked, alone, strict=True), key=lambda p: p[0].id)
        chunk_ids = [a.id for a, _ in pairs]
        alone_ids = [b.id for _, b in pairs]

        report = meter.MeterReport()
        meter.meter_ids(db, chunk_ids, TERMS, now, report)
        singles = meter.MeterReport()
        for vm_id in alone_ids:
            row = db.get(VM, vm_id)
            assert row is not None
            out = billing.settle(db, row, TERMS, now)
            db.commit()
            meter._count(row, out, singles)
        report.accrued_only = 0  # the per-VM path has no such step
        assert astuple(report) == astuple(singles)
        # Every path was taken.
        assert report.posted and report.stopped_for_funds and report.unfunded and report.expired

        db.expire_all()
        for a, b in pairs:
            assert _ledger(db, a, labels_a) == _ledger(db, b, labels_b), SPECS[chunked.index(a)]
            assert _fields(a) == _fields(b), SPECS[chunked.index(a)]
        assert _balances(db, chunked, labels_a) == _balances(db, alone, labels_b)
