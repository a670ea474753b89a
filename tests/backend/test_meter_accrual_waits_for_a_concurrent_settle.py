"""The meter job's accrual step locks only the VMs' hold balances, and that is enough to
serialise with any other settlement of the VM: while another process has settled the VM
(a stop: its usage posted, its hold cut to the stopped rate) but not committed, the meter
waits, then accrues from the stop at the stopped rate. Without the lock it would charge
the interval before the stop a second time, at the running rate."""

from __future__ import annotations

import threading
from datetime import timedelta

from fastapi.testclient import TestClient

from kumulus.backend import billing, ledger
from kumulus.backend.clock import aware, utcnow
from kumulus.backend.jobs import meter
from kumulus.backend.models import VM
from tests.backend.billing_fixtures import UNIT, account, host, placed

TERMS = billing.Terms(fee_bps=1000, window=600, post_every=3600, unfunded_grace=3600)


def test_the_accrual_step_waits_for_a_settle_in_progress(backend: TestClient) -> None:
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    t_meter = utcnow()
    t_stop = t_meter - timedelta(seconds=10)
    with db_.session() as db:
        dev = account(db, "developer")
        ledger.transfer(db, (ledger.CHAIN, None), (ledger.DEVELOPER, dev.id), UNIT, "deposit")
        db.commit()
        vm_id = placed(db, dev, host(db, account(db, "provider")), t_meter, TERMS).id
        row = db.get(VM, vm_id)
        assert row is not None
        row.metered_until = row.posted_at = t_meter - timedelta(seconds=100)
        db.commit()

    report = meter.MeterReport()
    with db_.session() as stopping, db_.session() as metering:
        row = stopping.get(VM, vm_id)
        assert row is not None
        billing.settle(stopping, row, TERMS, t_stop, to_state="stopped")  # not committed
        thread = threading.Thread(
            target=meter.meter_ids, args=(metering, [vm_id], TERMS, t_meter, report)
        )
        thread.start()
        thread.join(0.5)
        assert thread.is_alive(), "the meter did not wait for the hold's lock"
        stopping.commit()
        carry = row.meter_carry
        thread.join(30)
        assert not thread.is_alive()

    assert report.metered == report.accrued_only == 1 and report.skipped == 0
    with db_.session() as db:
        after = db.get(VM, vm_id)
        assert after is not None and after.metered_until is not None
        assert aware(after.metered_until) == t_meter
        # Ten seconds at the stopped rate, from where the stop left it; nothing before.
        cost = (billing.stopped_rate(after) * 10_000 + carry) // billing.MS_PER_HOUR
        assert 0 < after.accrued == cost == report.charged
