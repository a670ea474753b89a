"""The developer console's VM page shows how much of its disk the VM has used (its host's
report; `df` inside the VM shows the host's filesystem), or that nothing was reported."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from kumulus.backend.clock import utcnow
from kumulus.backend.models import Account
from tests.backend.billing_fixtures import account, host, vm
from tests.console.conftest import signup


def _vm_of(server: TestClient, email: str, used: int | None) -> str:
    with server.app.state.db.session() as db:  # type: ignore[attr-defined]
        dev = db.scalar(select(Account).where(Account.email == email))
        row = vm(db, dev, host(db, account(db, "provider")), utcnow() - timedelta(minutes=5))
        row.disk_used, row.disk_used_at = used, utcnow() if used is not None else None
        db.commit()
        return str(row.id)


def test_disk_usage_is_shown_against_the_size(server: TestClient) -> None:
    signup(server, "dev-disk@example.com")
    used = _vm_of(server, "dev-disk@example.com", 5 << 30)  # of the fixture's 20 GiB
    unknown = _vm_of(server, "dev-disk@example.com", None)
    for path in (f"/console/vms/{used}", f"/console/vms/{used}/panel"):
        page = server.get(path).text
        assert '<span id="disk-usage">Disk: 5 GiB used of 20 GiB (25 %)</span>' in page
    page = server.get(f"/console/vms/{unknown}").text
    assert "Disk: 20 GiB, usage not reported yet by its host" in page
