"""The developer console's ssh line: built from validated parts and shell-quoted; for a
host whose stored address is not an IP address or DNS name, no line and no copy button,
but the reason."""

from __future__ import annotations

import html
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from kumulus.backend.clock import utcnow
from kumulus.backend.models import Account, Host
from tests.backend.billing_fixtures import account, host, vm
from tests.console.conftest import signup

HOSTILE = '127.0.0.1 "-oProxyCommand=touch /tmp/pwn"<b>x</b>'


def _vm_of(server: TestClient, email: str, ssh_host: str) -> str:
    """A VM of the developer `email`, written directly with this ssh_host (as a row from
    before addresses were validated would be)."""
    with server.app.state.db.session() as db:  # type: ignore[attr-defined]
        dev = db.scalar(select(Account).where(Account.email == email))
        on = host(db, account(db, "provider"))
        db.execute(update(Host).where(Host.id == on.id).values(public_ip=ssh_host))
        row = vm(db, dev, on, utcnow() - timedelta(minutes=5))
        row.ssh_host, row.ssh_port = ssh_host, 2201
        db.commit()
        return str(row.id)


def test_hostile_host_gets_no_copy_line_but_the_reason(server: TestClient) -> None:
    signup(server, "dev@example.com")
    vm_id = _vm_of(server, "dev@example.com", HOSTILE)
    for path in (f"/console/vms/{vm_id}", f"/console/vms/{vm_id}/panel"):
        page = server.get(path)
        assert page.status_code == 200
        assert 'id="ssh-line"' not in page.text and "data-copy" not in page.text
        assert "ProxyCommand" not in page.text and "<b>x</b>" not in page.text
        assert "not a valid IP address or DNS name" in html.unescape(page.text)
        assert 'id="ssh-problem"' in page.text
    for path in ("/console/vms", "/console/vms/rows"):
        page = server.get(path)
        assert "ProxyCommand" not in page.text
        assert "not a valid IP address or DNS name" in html.unescape(page.text)


def test_valid_host_gets_the_quoted_line(server: TestClient) -> None:
    signup(server, "dev@example.com")
    vm_id = _vm_of(server, "dev@example.com", "2001:DB8::5")
    page = server.get(f"/console/vms/{vm_id}")
    assert '<code id="ssh-line">ssh -p 2201 alice@2001:db8::5</code>' in page.text
    assert 'data-copy="#ssh-line"' in page.text and "ssh-problem" not in page.text
    rows = server.get("/console/vms/rows")
    assert "<code>ssh -p 2201 alice@2001:db8::5</code>" in rows.text


def test_autoescape_is_on() -> None:
    from kumulus.console.web import templates

    assert templates.env.autoescape is not False
    page = templates.get_template("developer/_vm_rows.html").render(
        vms=[
            {
                "id": "v",
                "name": "<script>",
                "ssh_command": "ssh -p 1 a@<b>",
                "ssh_problem": None,
            }
        ]
    )
    assert "<script>" not in page and "&lt;b&gt;" in page
