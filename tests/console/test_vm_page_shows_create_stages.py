"""A VM page shows the stages of a VM coming up (placed on host X, starting, waiting for
SSH), the page polling faster meanwhile; a running VM shows none, but its price per hour
and its cost so far."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from kumulus.backend.clock import utcnow
from kumulus.backend.models import Account
from tests.backend.billing_fixtures import account, host, vm
from tests.console.conftest import signup


def _stages(html: str) -> list[tuple[str, str]]:
    return re.findall(r'<li class="stage-(\w+)"[^>]*>([^<…]+)', html)


def test_stages_follow_the_vm_state(server: TestClient) -> None:
    signup(server, "dev@example.com")
    with server.app.state.db.session() as db:  # type: ignore[attr-defined]
        dev = db.scalar(select(Account).where(Account.email == "dev@example.com"))
        machine = host(db, account(db, "provider"))
        row = vm(db, dev, machine, utcnow() - timedelta(minutes=30))
        row.actual_state, row.agent_vm_id, row.metered_until = "pending", None, None
        db.commit()
        vm_id, host_id = row.id, machine.id

    def set_state(actual: str) -> None:
        with server.app.state.db.session() as db:  # type: ignore[attr-defined]
            db.get(type(row), vm_id).actual_state = actual
            db.commit()

    page = server.get(f"/console/vms/{vm_id}").text
    assert _stages(page) == [
        ("done", f"Placed on host {host_id}"),
        ("current", "Starting"),
        ("todo", "Waiting for SSH"),
        ("todo", "Running"),
    ]
    assert 'data-poll="1"' in page
    set_state("starting")
    panel = server.get(f"/console/vms/{vm_id}/panel").text
    assert [s for s, _ in _stages(panel)] == ["done", "done", "current", "todo"]
    assert 'aria-current="step">Waiting for SSH' in panel

    set_state("running")
    page = server.get(f"/console/vms/{vm_id}").text
    assert _stages(page) == [] and 'data-poll="2"' in page
    # 2 vCPU * 0.01 + 4 GiB * 0.005 + 20 GiB * 0.0001 = 0.042 per hour.
    assert '<strong id="price-per-hour">0.042 UNIT</strong>' in page
    assert re.search(r'<strong id="cost-so-far">[0-9.]+ UNIT</strong>', page)
