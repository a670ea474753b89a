"""The provider console shows each host's isolation: "full", or "weak" with what is
missing (from the host's signed reports), in the host list and on the host's page."""

import secrets

from fastapi.testclient import TestClient
from sqlalchemy import select

from kumulus.backend.clock import utcnow
from kumulus.backend.models import Account, Host
from tests.console.conftest import signup


def _host(client: TestClient, email: str, isolated: bool, problem: str | None) -> str:
    with client.app.state.db.session() as db:  # type: ignore[attr-defined]
        account = db.scalar(select(Account).where(Account.email == email))
        assert account is not None
        host = Host(
            id=secrets.token_hex(8),
            account_id=account.id,
            wallet_address="w",
            api_url="http://127.0.0.1:1",
            public_ip="127.0.0.1",
            cpu=4,
            memory=8 << 30,
            disk=100 << 30,
            disk_quota=True,
            isolated=isolated,
            isolation_problem=problem,
            registered_at=utcnow(),
            last_heartbeat_at=utcnow(),
        )
        db.add(host)
        db.commit()
        return host.id


def test_hosts_show_their_isolation(server: TestClient) -> None:
    email = "prov-iso@example.com"
    signup(server, email, role="provider")
    weak = _host(server, email, False, "missing: userns-remap, firewall")
    full = _host(server, email, True, None)
    rows = server.get("/console/provider/hosts/rows").text
    assert "<strong>weak</strong>" in rows and "missing: userns-remap, firewall" in rows
    assert ">full</td>" in rows
    page = server.get(f"/console/provider/hosts/{weak}").text
    assert 'id="isolation">Weak (missing: userns-remap, firewall)' in page
    assert (
        "Full: userns-remap, firewall and disk quota"
        in server.get(f"/console/provider/hosts/{full}").text
    )
