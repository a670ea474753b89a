"""The developer console's VM page shows the VM's host key fingerprint next to its ssh
line, so the first connection can be checked; a VM without a known key says so."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select

from kumulus.backend.clock import utcnow
from kumulus.backend.models import Account
from kumulus.core.hostkeys import parse_host_key
from tests.backend.billing_fixtures import account, host, vm
from tests.console.conftest import signup

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBjcamrCiAFWxBb6xGbJXN1f2NCHHmqZY3l0NObEFIou"


def _vm_of(server: TestClient, email: str, host_key: str | None) -> str:
    with server.app.state.db.session() as db:  # type: ignore[attr-defined]
        dev = db.scalar(select(Account).where(Account.email == email))
        row = vm(db, dev, host(db, account(db, "provider")), utcnow() - timedelta(minutes=5))
        row.ssh_host, row.ssh_port = "203.0.113.5", 2201
        if host_key:
            row.host_key = host_key
            row.host_key_fingerprint = parse_host_key(host_key).fingerprint
        db.commit()
        return str(row.id)


def test_the_fingerprint_is_shown_next_to_the_ssh_line(server: TestClient) -> None:
    signup(server, "dev@example.com")
    with_key = _vm_of(server, "dev@example.com", HOST_KEY)
    without = _vm_of(server, "dev@example.com", None)
    fingerprint = parse_host_key(HOST_KEY).fingerprint

    for path in (f"/console/vms/{with_key}", f"/console/vms/{with_key}/panel"):
        page = server.get(path).text
        line = page.index('id="ssh-line"')
        shown = page.index(f'<code id="host-key-fingerprint">{fingerprint}</code>')
        assert line < shown < page.index("</div>", shown)  # in the same card
        assert "(ssh-ed25519)" in page and f"kumulus vm ssh {with_key}" in page

    page = server.get(f"/console/vms/{without}").text
    assert 'id="ssh-line"' in page and "host-key-fingerprint" not in page
    assert 'id="host-key-unknown"' in page
