"""ATTACK: a provider `docker stop`s every developer container on its host (freeing the
whole machine) and keeps sending honest heartbeats. They report each container `exited`;
the backend records the VM as `stopped`, shows it stopped, and yet the meter goes on
charging the full *running* rate, renewing the hold from the developer's deposits and
paying the provider withdrawable earnings for compute it does not deliver. Nothing
restarts the container (the `stops` job only converges stops). The previous fix covered
`missing` and an offline host; an observed stop is the same failure: issue 11 says the
developer never pays for a provider's failure, and the backend has the host's own word
that the VM is not running."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update

from kumulus.backend import billing, ledger
from kumulus.backend.clock import utcnow
from kumulus.backend.models import VM
from kumulus.backend.vms import reconcile_inventory
from tests.backend.billing_fixtures import UNIT, account, host, placed

TERMS = billing.Terms(fee_bps=1000, window=600)


def test_a_vm_its_host_reports_exited_is_not_billed_as_running(backend: TestClient) -> None:
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    t0 = utcnow() - timedelta(hours=3)
    with db_.session() as db:
        prov, dev = account(db, "provider"), account(db, "developer")
        ledger.transfer(db, (ledger.CHAIN, None), (ledger.DEVELOPER, dev.id), UNIT, "deposit")
        on = host(db, prov)
        machine = placed(db, dev, on, t0, TERMS)
        # The provider stopped the container; every heartbeat since reports it exited.
        reconcile_inventory([machine], {machine.agent_vm_id or "": "exited"}, as_of=utcnow())
        db.commit()
        assert (machine.intended_state, machine.actual_state) == ("running", "stopped")
        vm_id, prov_id = machine.id, prov.id
        running = billing.running_rate(machine)
        stopped = billing.stopped_rate(machine)
        # and it was stopped three hours ago (the meter last ran then)
        db.execute(update(VM).where(VM.id == vm_id).values(metered_until=t0, posted_at=t0))
        db.commit()
    backend.app.state.jobs.run_now("meter")  # type: ignore[attr-defined]
    with db_.session() as db:
        earned = ledger.balance(db, ledger.PROVIDER, prov_id)
        paid = UNIT - ledger.balance(db, ledger.DEVELOPER, dev.id) - billing.held_by(db, dev.id)
        assert paid <= 3 * stopped + stopped // 60, (  # 3 h and the test's own seconds
            f"developer paid {paid} planck, provider earned {earned} (running rate "
            f"{running}/h, disk {stopped}/h) for a VM its host reports exited"
        )
