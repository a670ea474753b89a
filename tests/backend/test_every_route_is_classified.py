"""Access control by construction: every API route of both apps has exactly one access class
(`core/access.py`, from its dependencies), and for each one anonymous callers get 401, the
wrong role 403 (or 401 where a bearer token is not the credential), and another owner's
resource 404, over real HTTP against the whole platform (tests/fuzz_platform.py). Money
routes (payouts, wallets, billing, host prices) are walked like every other. A new route
without a class, or with a path parameter this test cannot fill, fails here."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from kumulus.core.access import Access, route_mark
from kumulus.core.delegation import delegation_text
from kumulus.core.openapi_statuses import api_routes
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic, sign_request
from tests.fuzz_platform import PASSWORD, Platform, platform

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with pytest.MonkeyPatch.context() as mp, platform(tmp_path_factory.mktemp("p"), mp) as p:
        yield p


def _account(http: httpx.Client, role: str) -> dict[str, str]:
    email = f"other-{role}-{secrets.token_hex(3)}@example.com"
    http.post("/v1/auth/signup", json={"email": email, "password": PASSWORD, "role": role})
    token = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    return {"Authorization": f"Bearer {token.json()['token']}"}


def _routes(app: FastAPI) -> list[tuple[str, str, Access]]:
    found, unclassified = [], []
    for path, methods, dependant, _ in api_routes(app):
        access = route_mark(dependant).access
        for method in sorted(methods):
            if len(access) != 1:
                unclassified.append(f"{method} {path}: {sorted(access) or 'no access class'}")
            else:
                found.append((method, path, next(iter(access))))
    assert not unclassified, "routes without exactly one access class:\n" + "\n".join(unclassified)
    return found


def _fill(path: str, values: dict[str, str]) -> str:
    for name in [p.split("}")[0] for p in path.split("{")[1:]]:
        assert name in values, f"{path}: no value for path parameter {name}; add one here"
        path = path.replace("{" + name + "}", values[name])
    return path


def _stranger_envelope() -> dict[str, object]:
    stranger = keypair_from_mnemonic(new_mnemonic())
    return {
        "address": stranger.ss58_address,
        "timestamp": time.time(),
        "nonce": secrets.token_hex(16),
        "payload": {"kind": "heartbeat", "hostId": "abc"},
        "signature": "0x" + "00" * 64,
    }


def _bodies(host_id: str) -> dict[tuple[str, str], object]:
    """Bodies valid enough to reach the access check where the route reads its body
    first (a host's prices; a delegation names its host in the signed text)."""
    stranger = keypair_from_mnemonic(new_mnemonic())
    until = datetime.now(UTC) + timedelta(days=1)
    return {
        ("PATCH", "/v1/provider/hosts/{host_id}"): {
            "prices": {"cpu": "0.01", "memoryGib": "0.005", "diskGib": "0.0001"}
        },
        ("POST", "/v1/hosts/delegation"): {
            "message": delegation_text(host_id, stranger.ss58_address, until),
            "signature": "0x" + "00" * 64,
        },
    }


def test_backend_routes(live: Platform, tmp_path: Path) -> None:
    from kumulus.backend.app import create_app
    from kumulus.config import BackendSettings

    tmp = tmp_path
    app = create_app(BackendSettings(data_dir=tmp, KUMULUS_DATABASE_URL=f"sqlite:///{tmp}/k.db"))
    routes = _routes(app)
    http = httpx.Client(base_url=live.backend_url, timeout=60)
    other_developer = _account(http, "developer")
    other_provider = _account(http, "provider")
    # One resource of each kind owned by the platform's developer and provider.
    key_id = str(http.get("/v1/ssh-keys", headers=live.developer).json()["items"][0]["id"])
    vm = http.post(
        "/v1/vms",
        headers={**live.developer, "Prefer": "wait=30"},
        json={"username": "dev", "sshKeyId": int(key_id), "cpu": 1, "memory": "1g", "disk": "2g"},
    )
    assert vm.status_code in (200, 201, 202), vm.text
    token_id = str(http.get("/v1/tokens", headers=live.developer).json()["items"][0]["id"])
    owned = {
        "key_id": key_id,
        "vm_id": vm.json()["id"],
        "token_id": token_id,
        "host_id": live.host_id,
        "anchor_id": "1",  # none exist without a chain: tests/e2e/test_anchoring.py
        "index": "0",
    }
    owner_of = {Access.DEVELOPER: live.developer, Access.PROVIDER: live.provider}
    other_of = {Access.DEVELOPER: other_developer, Access.PROVIDER: other_provider}
    wrong_role = {Access.DEVELOPER: live.provider, Access.PROVIDER: live.developer}
    bodies = _bodies(live.host_id)
    problems: list[str] = []
    for method, template, access in routes:
        path = _fill(template, owned)
        default = {} if method in ("POST", "PUT", "PATCH") else None
        body = bodies.get((method, template), default)

        def expect(headers: dict[str, str], want: int | set[int], who: str, json: object) -> None:
            got = http.request(method, path, headers=headers, json=json).status_code  # noqa: B023
            if got not in ({want} if isinstance(want, int) else want):
                problems.append(f"{method} {template} as {who}: {got}, want {want}")  # noqa: B023

        if access is Access.AGENT_SIGNED:
            signed = body if (method, template) in bodies else _stranger_envelope()
            expect({}, {401, 404}, "a stranger's signature", signed)
            expect(live.developer, {401, 404}, "a developer", signed)
        elif access not in (Access.PUBLIC, Access.ADMIN):  # ADMIN: loopback, as this client
            expect({}, 401, "anonymous", body)
            expect({"Authorization": "Bearer kmt_forged"}, 401, "a forged token", body)
            if access in wrong_role:
                expect(wrong_role[access], 403, "the wrong role", body)
            if "{" in template and access in other_of:
                expect(other_of[access], 404, "another owner", body)
                if method == "GET" and ("{vm_id}" in template or "{host_id}" in template):
                    # ... and not to the owner: the 404 is about ownership.
                    expect(owner_of[access], 200, "the owner", body)
    assert not problems, "\n".join(problems)


def test_agent_routes(live: Platform, tmp_path: Path) -> None:
    from kumulus.agent.app import create_app
    from kumulus.config import AgentSettings
    from tests.fakes import FakeRuntime

    tmp = tmp_path
    app = create_app(
        AgentSettings(state_dir=tmp, lxcfs_dir=tmp / "lxcfs"), FakeRuntime(), keypair=None
    )
    routes = _routes(app)
    http = httpx.Client(base_url=live.agent_url, timeout=60)
    stranger = keypair_from_mnemonic(new_mnemonic())
    problems = []
    for method, template, access in routes:
        if access is Access.PUBLIC or template == "/metrics":
            continue  # /metrics: loopback, as this client (tests/core/test_metrics_access.py)
        assert access is Access.ADMIN, (method, template, access)
        path = _fill(template, {"vm_id": "abc"})
        content = b"{}" if method == "POST" else b""
        signed = sign_request(stranger, method, path, content, audience=live.host_id)
        for who, headers in (
            ("anonymous", {}),
            ("a forged token", {"Authorization": "Bearer forged"}),
            ("a backend developer's token", live.developer),
            ("a key the agent does not pin", signed),
        ):
            got = http.request(
                method, path, headers={**headers, "Content-Type": "application/json"},
                content=content,
            ).status_code  # fmt: skip
            if got != 401:
                problems.append(f"{method} {template} as {who}: {got}, want 401")
    assert not problems, "\n".join(problems)
