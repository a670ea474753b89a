"""Every route but /healthz needs the admin token or a signature by the pinned backend."""

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kumulus.config import AgentSettings
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic, sign_request

ROUTES = [
    ("GET", "/v1/vms", None),
    ("POST", "/v1/vms", {}),
    ("GET", "/v1/vms/0123456789abcdef", None),
    ("DELETE", "/v1/vms/0123456789abcdef", None),
    ("POST", "/v1/vms/0123456789abcdef/start", None),
    ("POST", "/v1/vms/0123456789abcdef/stop", None),
    ("GET", "/v1/vms/0123456789abcdef/logs", None),
    ("GET", "/v1/host", None),
    ("GET", "/v1/stats/latest", None),
    ("POST", "/create-vm", {}),
    ("POST", "/start-vm", {"vmId": "0123456789abcdef"}),
    ("POST", "/stop-vm", {"vmId": "0123456789abcdef"}),
    ("POST", "/delete-vm", {"vmId": "0123456789abcdef"}),
    ("POST", "/get-vm-status", {"vmId": "0123456789abcdef"}),
    ("POST", "/get-vm-logs", {"vmId": "0123456789abcdef"}),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_anonymous_gets_401(fake_agent: TestClient, method: str, path: str, body: object) -> None:
    del fake_agent.headers["Authorization"]
    resp = fake_agent.request(method, path, json=body)
    assert resp.status_code == 401
    assert "Bearer" in resp.headers["www-authenticate"]
    assert resp.json()["detail"]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_wrong_token_gets_401(fake_agent: TestClient, method: str, path: str, body: object) -> None:
    resp = fake_agent.request(method, path, json=body, headers={"Authorization": "Bearer nope"})
    assert resp.status_code == 401


def test_healthz_is_open_and_says_nothing_about_vms(fake_agent: TestClient) -> None:
    del fake_agent.headers["Authorization"]
    assert fake_agent.get("/healthz").json()["ok"] is True


def test_admin_token_file_is_0600(agent_settings: AgentSettings, fake_agent: TestClient) -> None:
    assert agent_settings.token_path.stat().st_mode & 0o777 == 0o600
    assert fake_agent.get("/v1/vms").status_code == 200


def _aud(settings: AgentSettings) -> str:
    return (settings.state_dir / "agent-id").read_text().strip()


def _signed(client: TestClient, kp, method: str, path: str, body: bytes = b""):  # type: ignore[no-untyped-def]
    audience = client.app.state.auth.agent_id  # type: ignore[attr-defined]
    headers = sign_request(kp, method, path, body, audience=audience)
    headers["Content-Type"] = "application/json"
    del client.headers["Authorization"]
    return client.request(method, path, content=body, headers=headers)


def test_pinned_backend_signature_is_accepted_once(
    fake_agent: TestClient, agent_settings: AgentSettings
) -> None:
    backend = keypair_from_mnemonic(new_mnemonic())
    agent_settings.backend_key_path.write_text(backend.ss58_address)
    headers = sign_request(backend, "GET", "/v1/host", b"", audience=_aud(agent_settings))
    del fake_agent.headers["Authorization"]
    assert fake_agent.get("/v1/host", headers=headers).status_code == 200
    replay = fake_agent.get("/v1/host", headers=headers)
    assert replay.status_code == 401
    assert "replayed" in replay.json()["detail"]


def test_signature_by_another_key_is_refused(
    fake_agent: TestClient, agent_settings: AgentSettings
) -> None:
    backend, intruder = (keypair_from_mnemonic(new_mnemonic()) for _ in range(2))
    agent_settings.backend_key_path.write_text(backend.ss58_address)
    resp = _signed(fake_agent, intruder, "GET", "/v1/vms")
    assert resp.status_code == 401
    assert "does not trust" in resp.json()["detail"]


def test_signed_body_cannot_be_swapped(
    fake_agent: TestClient, agent_settings: AgentSettings, ssh_keypair: tuple[Path, str]
) -> None:
    backend = keypair_from_mnemonic(new_mnemonic())
    agent_settings.backend_key_path.write_text(backend.ss58_address)
    signed_body = b'{"username":"alice","sshKey":"x","cpu":1,"memory":"1g"}'
    headers = sign_request(backend, "POST", "/v1/vms", signed_body, audience=_aud(agent_settings))
    del fake_agent.headers["Authorization"]
    other = (
        b'{"username":"mallory","sshKey":"' + ssh_keypair[1].encode() + b'","cpu":1,"memory":"1g"}'
    )
    resp = fake_agent.post(
        "/v1/vms", content=other, headers={**headers, "Content-Type": "application/json"}
    )
    assert resp.status_code == 401
    assert "bad signature" in resp.json()["detail"]


def test_without_a_pinned_backend_signed_calls_are_refused(fake_agent: TestClient) -> None:
    backend = keypair_from_mnemonic(new_mnemonic())
    resp = _signed(fake_agent, backend, "GET", "/v1/vms")
    assert resp.status_code == 401
    assert "no pinned backend" in resp.json()["detail"]


def test_request_for_another_agent_is_refused(
    fake_agent: TestClient, agent_settings: AgentSettings
) -> None:
    backend = keypair_from_mnemonic(new_mnemonic())
    agent_settings.backend_key_path.write_text(backend.ss58_address)
    agent_settings.backend_key_path.chmod(0o644)
    headers = sign_request(backend, "GET", "/v1/host", b"", audience="0123456789abcdef")
    del fake_agent.headers["Authorization"]
    resp = fake_agent.get("/v1/host", headers=headers)
    assert resp.status_code == 401 and "another agent" in resp.json()["detail"]


def test_request_signed_before_the_agent_started_is_refused(
    fake_agent: TestClient, agent_settings: AgentSettings
) -> None:
    import time

    backend = keypair_from_mnemonic(new_mnemonic())
    agent_settings.backend_key_path.write_text(backend.ss58_address)
    headers = sign_request(
        backend, "GET", "/v1/host", b"", audience=_aud(agent_settings), now=time.time() - 30
    )
    del fake_agent.headers["Authorization"]
    resp = fake_agent.get("/v1/host", headers=headers)
    assert resp.status_code == 401 and "before this service started" in resp.json()["detail"]


def test_pin_file_writable_by_others_is_ignored(
    fake_agent: TestClient, agent_settings: AgentSettings
) -> None:
    backend = keypair_from_mnemonic(new_mnemonic())
    agent_settings.backend_key_path.write_text(backend.ss58_address)
    agent_settings.backend_key_path.chmod(0o666)
    headers = sign_request(backend, "GET", "/v1/host", b"", audience=_aud(agent_settings))
    del fake_agent.headers["Authorization"]
    resp = fake_agent.get("/v1/host", headers=headers)
    assert resp.status_code == 401
