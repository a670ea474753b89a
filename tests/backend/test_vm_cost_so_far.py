"""A VM's costSoFar is what its developer has really been charged for it: usage posted to
the ledger, usage accrued on its hold since, and the seconds not metered yet, equal to what
metering then charges; another VM's charges never count; the API shows it."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from kumulus.backend import billing, ledger, vm_costs
from kumulus.backend.clock import utcnow
from kumulus.backend.models import Account
from tests.backend.billing_fixtures import UNIT, account, host, placed
from tests.backend.conftest import Actor

TERMS = billing.Terms(fee_bps=1000, window=600)


def test_cost_so_far_is_what_metering_charges(backend: TestClient) -> None:
    app = backend.app
    t0 = utcnow() - timedelta(hours=2)
    with app.state.db.session() as db:  # type: ignore[attr-defined]
        prov, dev = account(db, "provider"), account(db, "developer")
        ledger.transfer(db, (ledger.CHAIN, None), (ledger.DEVELOPER, dev.id), UNIT, "deposit")
        machine = placed(db, dev, host(db, prov), t0, TERMS)
        other = placed(db, dev, host(db, prov), t0, TERMS)
        charged = 0
        # Posted (the stop), then accrued on the hold while stopped (not posted yet).
        for seconds, to_state in ((90, "stopped"), (190, None)):
            out = billing.settle(
                db, machine, TERMS, t0 + timedelta(seconds=seconds), to_state=to_state
            )
            charged += out.charged
            db.commit()
        assert machine.accrued > 0  # some of it is on the hold only
        billing.settle(db, other, TERMS, t0 + timedelta(seconds=3000))
        db.commit()

        now = t0 + timedelta(seconds=290)  # 100 s not metered yet
        posted = vm_costs.posted_usage(db, [machine, other])
        shown = vm_costs.cost_so_far(machine, posted[machine.id], False, now)
        charged += billing.settle(db, machine, TERMS, now).charged
        db.commit()
        assert shown == charged > 0
        assert vm_costs.cost_so_far(machine, posted[machine.id], False, now) == shown


def test_the_api_shows_cost_and_price(backend: TestClient) -> None:
    dev = Actor(backend, "developer")
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        prov = account(db, "provider")
        owner = db.get(Account, dev.id)
        assert owner is not None
        ledger.transfer(db, (ledger.CHAIN, None), (ledger.DEVELOPER, owner.id), UNIT, "deposit")
        machine = placed(db, owner, host(db, prov), utcnow() - timedelta(hours=1), TERMS)
        vm_id = machine.id
    got = backend.get(f"/v1/vms/{vm_id}", headers=dev.headers).json()
    listed = backend.get("/v1/vms", headers=dev.headers).json()["items"]
    # 2 vCPU * 0.01 + 4 GiB * 0.005 + 20 GiB * 0.0001 = 0.042 per hour, for about an hour.
    assert got["pricePerHour"] == "0.042 UNIT"
    assert got["costSoFar"].startswith("0.041") or got["costSoFar"].startswith("0.042")
    assert [v["costSoFar"][:5] for v in listed] == [got["costSoFar"][:5]]
