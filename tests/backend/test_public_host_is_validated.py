"""A host's public address ends up in the ssh line developers run, so the backend takes
only an IP address or a DNS name from providers (registration, IP changes), and never
serves a stored one that is anything else."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from substrateinterface import Keypair

from kumulus.backend.clock import utcnow
from kumulus.backend.models import VM, Account, Host, HostToken
from kumulus.core.signing import Domain, sign_envelope
from tests.backend.billing_fixtures import account, host, vm
from tests.backend.conftest import Actor, link_wallet, register_host, register_payload

HOSTILE = [
    '127.0.0.1 "-oProxyCommand=touch /tmp/pwn"',
    "-oProxyCommand=x",
    "a b",
    "1.2.3.4;id",
    "$(id)",
    "host\n",
    "host.example.com\n",
    "[::1]",
    "fe80::1%eth0",
    "dev@203.0.113.5",
    "203.0.113.5:22",
    "localhost",
    "",
    "a" * 300,
    ("a" * 60 + ".") * 5 + "com",
]


def _db(backend: TestClient) -> object:
    return backend.app.state.db  # type: ignore[attr-defined]


def _hosts(backend: TestClient) -> int:
    with _db(backend).session() as db:  # type: ignore[attr-defined]
        return int(db.scalar(select(func.count()).select_from(Host)) or 0)


def _assert_invalid(resp: object, field: str = "publicIp") -> None:
    assert resp.status_code == 422, resp.text  # type: ignore[attr-defined]
    body = resp.json()  # type: ignore[attr-defined]
    assert body["code"] == "invalid" and body["retry"] is False
    assert body["detail"].startswith("invalid payload fields: publicIp")
    assert [p["loc"] for p in body["fields"]] == [[field]]
    assert "Traceback" not in body["detail"]


@pytest.mark.parametrize("bad", HOSTILE)
def test_registration_refuses_a_hostile_public_ip(
    backend: TestClient, provider: Actor, wallet: Keypair, host_key: Keypair, bad: str
) -> None:
    link_wallet(backend, provider, wallet)
    token = backend.post("/v1/provider/host-tokens", headers=provider.headers).json()["token"]
    env = sign_envelope(
        host_key, register_payload(token, publicIp=bad), domain=Domain.HOST_REGISTRATION
    )
    _assert_invalid(backend.post("/v1/hosts/register", json=env.model_dump()))
    assert _hosts(backend) == 0
    with _db(backend).session() as db:  # type: ignore[attr-defined]
        assert db.scalar(select(HostToken.used_at)) is None  # the token is still good


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("203.0.113.5", "203.0.113.5"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("Host-1.Example.COM.", "host-1.example.com"),
    ],
)
def test_registration_accepts_ips_and_dns_names(
    backend: TestClient,
    provider: Actor,
    wallet: Keypair,
    host_key: Keypair,
    given: str,
    stored: str,
) -> None:
    link_wallet(backend, provider, wallet)
    token = backend.post("/v1/provider/host-tokens", headers=provider.headers).json()["token"]
    env = sign_envelope(
        host_key, register_payload(token, publicIp=given), domain=Domain.HOST_REGISTRATION
    )
    resp = backend.post("/v1/hosts/register", json=env.model_dump())
    assert resp.status_code == 201, resp.text
    host_id = resp.json()["hostId"]
    shown = backend.get(f"/v1/provider/hosts/{host_id}", headers=provider.headers).json()
    assert shown["publicIp"] == stored


@pytest.mark.parametrize("bad", HOSTILE)
def test_ip_change_refuses_a_hostile_value_and_keeps_the_old_one(
    backend: TestClient, provider: Actor, wallet: Keypair, host_key: Keypair, bad: str
) -> None:
    link_wallet(backend, provider, wallet)
    host_id = register_host(backend, provider, wallet, host_key)
    env = sign_envelope(
        host_key, {"kind": "ip", "hostId": host_id, "publicIp": bad}, domain=Domain.HOST_IP
    )
    _assert_invalid(backend.post("/v1/hosts/ip", json=env.model_dump()))
    shown = backend.get(f"/v1/provider/hosts/{host_id}", headers=provider.headers).json()
    assert shown["publicIp"] == "127.0.0.1"


def test_ip_change_accepts_ips_and_dns_names(
    backend: TestClient, provider: Actor, wallet: Keypair, host_key: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    host_id = register_host(backend, provider, wallet, host_key)
    for given, stored in [
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8:0::2", "2001:db8::2"),
        ("vm-host.Example.org", "vm-host.example.org"),
    ]:
        env = sign_envelope(
            host_key, {"kind": "ip", "hostId": host_id, "publicIp": given}, domain=Domain.HOST_IP
        )
        assert backend.post("/v1/hosts/ip", json=env.model_dump()).status_code == 200
        shown = backend.get(f"/v1/provider/hosts/{host_id}", headers=provider.headers).json()
        assert shown["publicIp"] == stored


def _vm_row(backend: TestClient, developer: Actor, public_ip: str, ssh_host: str) -> str:
    """A VM of `developer` on a host, both written directly (as rows from before
    validation would be): the host's public_ip and the VM's ssh_host as given."""
    with _db(backend).session() as db:  # type: ignore[attr-defined]
        dev = db.get(Account, developer.id)
        on = host(db, account(db, "provider"))
        db.execute(update(Host).where(Host.id == on.id).values(public_ip=public_ip))
        row = vm(db, dev, on, utcnow() - timedelta(minutes=1))
        row.ssh_host, row.ssh_port = ssh_host, 2201
        db.commit()
        return str(row.id)


@pytest.mark.parametrize("bad", ['127.0.0.1 "-oProxyCommand=touch /tmp/pwn"', "-oX", "[::1]"])
def test_stored_hostile_ssh_host_is_not_served(
    backend: TestClient, developer: Actor, bad: str
) -> None:
    vm_id = _vm_row(backend, developer, public_ip=bad, ssh_host=bad)
    shown = backend.get(f"/v1/vms/{vm_id}", headers=developer.headers).json()
    assert shown["sshCommand"] is None
    assert shown["sshHost"] is None and shown["sshPort"] is None
    assert "not a valid IP address or DNS name" in shown["sshProblem"]
    assert "ProxyCommand" not in str(shown)
    listed = backend.get("/v1/vms", headers=developer.headers).json()["items"]
    assert "ProxyCommand" not in str(listed)
    assert [v["sshProblem"] for v in listed] == [shown["sshProblem"]]


def test_valid_ssh_host_is_served_as_a_quoted_command(
    backend: TestClient, developer: Actor
) -> None:
    vm_id = _vm_row(backend, developer, public_ip="203.0.113.5", ssh_host="203.0.113.5")
    shown = backend.get(f"/v1/vms/{vm_id}", headers=developer.headers).json()
    assert shown["sshCommand"] == "ssh -p 2201 alice@203.0.113.5"
    assert (shown["sshHost"], shown["sshPort"], shown["sshProblem"]) == ("203.0.113.5", 2201, None)
    vm6 = _vm_row(backend, developer, public_ip="2001:db8::5", ssh_host="2001:db8::5")
    # No brackets: OpenSSH resolves "alice@[2001:db8::5]" as the name "[2001:db8::5]".
    assert backend.get(f"/v1/vms/{vm6}", headers=developer.headers).json()["sshCommand"] == (
        "ssh -p 2201 alice@2001:db8::5"
    )


def test_no_vm_is_placed_on_a_host_with_a_stored_hostile_address(
    backend: TestClient, developer: Actor, ssh_keypair: tuple[Path, str]
) -> None:
    with _db(backend).session() as db:  # type: ignore[attr-defined]
        on = host(db, account(db, "provider"))  # online, fits
        db.execute(update(Host).where(Host.id == on.id).values(public_ip="-oProxyCommand=x"))
        host_id = on.id
        db.commit()
    resp = backend.post(
        "/v1/vms",
        headers=developer.headers,
        json={"username": "dev", "sshKey": ssh_keypair[1], "cpu": 1, "memory": "1g"},
    )
    # Refused before its agent is asked (that one would not answer: a connection error).
    assert resp.status_code == 502 and "SSH address is not valid" in resp.json()["detail"]
    with _db(backend).session() as db:  # type: ignore[attr-defined]
        placed = db.scalar(select(VM))
        assert placed is not None and placed.actual_state == "failed"
        assert placed.ssh_host is None and placed.agent_vm_id is None
        row = db.get(Host, host_id)
        assert row is not None and row.reserved_cpu == 0  # capacity given back
