"""A real agent registers with a real backend: registration signed by the host's own key,
delegated by the wallet (used once, never stored on the host), pinned backend key, signed
heartbeats that bring the host online."""

import time
from pathlib import Path

import httpx

from kumulus.core.signing import (
    keypair_from_mnemonic,
    load_keypair,
    new_mnemonic,
    sign_request,
)
from tests.e2e.agent_process import (
    AgentProcess,
    BackendProcess,
    link_wallet,
    make_host_key,
    register_agent,
)


def test_agent_registers_and_heartbeats_bring_it_online(docker_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    backend = BackendProcess(tmp_path / "backend").start()
    mnemonic = new_mnemonic()
    wallet = keypair_from_mnemonic(mnemonic)
    host_key = make_host_key(tmp_path / "agent")
    agent = AgentProcess(
        tmp_path / "agent", (23540, 23549), KUMULUS_AGENT_STATS_INTERVAL="1"
    ).start()
    try:
        with httpx.Client(base_url=backend.url, timeout=30) as api:
            api.post(
                "/v1/auth/signup",
                json={"email": "p@example.com", "password": "long password", "role": "provider"},
            )
            token = api.post(
                "/v1/auth/login", json={"email": "p@example.com", "password": "long password"}
            ).json()["token"]
            api.headers["Authorization"] = f"Bearer {token}"
            assert link_wallet(api, wallet).status_code == 200
            host_token = api.post("/v1/provider/host-tokens").json()["token"]

            out = register_agent(agent, backend.url, host_token, mnemonic)
            assert out.returncode == 0, out.stderr
            assert "registered as host" in out.stdout
            assert f"host key {host_key} delegated by {wallet.ss58_address}" in out.stdout
            assert not (tmp_path / "agent" / "wallet-mnemonic").exists()

            deadline = time.monotonic() + 20
            hosts = []
            while time.monotonic() < deadline:
                hosts = api.get("/v1/provider/hosts").json()["items"]
                if hosts and hosts[0]["status"] == "online":
                    break
                time.sleep(0.5)
            assert hosts and hosts[0]["status"] == "online", hosts
            assert hosts[0]["apiUrl"] == f"http://127.0.0.1:{agent.port}"
            assert hosts[0]["diskQuota"] is True
            assert hosts[0]["hostKeyState"] == "delegated"
            host_id = hosts[0]["id"]

        # The agent now trusts the backend's key, and only it.
        backend_key = load_keypair(tmp_path / "backend" / "backend-mnemonic")
        ok = httpx.get(
            agent.url + "/v1/host",
            headers=sign_request(backend_key, "GET", "/v1/host", b"", audience=host_id),
        )
        assert ok.status_code == 200
        intruder = keypair_from_mnemonic(new_mnemonic())
        refused = httpx.get(
            agent.url + "/v1/host",
            headers=sign_request(intruder, "GET", "/v1/host", b"", audience=host_id),
        )
        assert refused.status_code == 401

        # A second registration with the same one-time token is refused.
        again = register_agent(agent, backend.url, host_token, mnemonic)
        assert again.returncode == 1 and "used" in again.stderr
    finally:
        agent.stop()
        backend.stop()
