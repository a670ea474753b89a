"""ATTACK: a provider deletes a developer's container on its host (to sell the capacity
again, or just to stop serving) and keeps reporting heartbeats. The heartbeat marks the VM
`missing`, yet the meter goes on charging the developer the full *running* price, renewing
the hold from their deposits, and paying the provider withdrawable earnings for a VM that
does not exist. The same holds for a host that stopped answering (`unreachable`): the
developer pays for a provider's failure, which issue 11 rules out."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from kumulus.backend import billing, ledger
from kumulus.backend.clock import utcnow
from kumulus.backend.models import VM, Host
from kumulus.backend.vms import reconcile_inventory
from tests.backend.billing_fixtures import UNIT, account, host, placed

TERMS = billing.Terms(fee_bps=1000, window=600)


def test_a_vm_its_host_reports_missing_is_not_billed_as_running(backend: TestClient) -> None:
    db_ = backend.app.state.db  # type: ignore[attr-defined]
    t0 = utcnow() - timedelta(hours=3)
    with db_.session() as db:
        prov, dev = account(db, "provider"), account(db, "developer")
        ledger.transfer(db, (ledger.CHAIN, None), (ledger.DEVELOPER, dev.id), UNIT, "deposit")
        on = host(db, prov)
        machine = placed(db, dev, on, t0, TERMS)
        # The provider removed the container an hour after it started; every heartbeat
        # since reports an inventory without it.
        reconcile_inventory([machine], {}, as_of=utcnow())
        db.commit()
        vm_id, prov_id = machine.id, prov.id
        assert machine.actual_state == "missing"
        running = billing.running_rate(machine)
        stopped = billing.stopped_rate(machine)
    backend.app.state.jobs.run_now("meter")  # type: ignore[attr-defined]
    with db_.session() as db:
        machine = db.get(VM, vm_id)
        assert machine is not None
        on = db.get(Host, machine.host_id)
        earned = ledger.balance(db, ledger.PROVIDER, prov_id)
        # Three hours at most at the stopped (disk) rate: the developer never pays for what
        # the provider does not run.
        assert earned <= 3 * stopped, (
            f"provider earned {earned} planck (running rate {running}/h, disk {stopped}/h) "
            f"for a VM its host reports {machine.actual_state}"
        )
