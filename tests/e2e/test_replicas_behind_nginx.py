"""The production shape on one machine: three backend replicas started at once on one empty
PostgreSQL database with the same keys, Debian's nginx in front of them serving the site in
deploy/nginx over TLS, and a provider's agent (fake runtime) whose registration and signed
heartbeats go through the proxy. Sign-up, log-in and a VM through the proxy; the proxy
spreads requests over the replicas, passes the client's address on (X-Forwarded-For, read
by the backend's trusted_proxies) without trusting what a client wrote, never serves
/metrics, refuses oversized bodies, and keeps answering when replicas die."""

from __future__ import annotations

import secrets
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from kumulus.agent.app import create_app as create_agent
from kumulus.agent.host_key import ensure_host_key
from kumulus.agent.registration import register
from kumulus.config import AgentSettings
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.e2e.agent_process import BackendProcess, delegate, link_wallet
from tests.e2e.replicas import shared_keys, start_all, stop_all
from tests.fakes import FakeRuntime
from tests.nginx_proxy import Proxy, free_port, nginx_binary, nginx_proxy

PASSWORD = "correct horse battery"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExoKzrGLzzNNO9d+FQVgBOqM2x6VJGMeYFHzkaLIm6b e2e"
pytestmark = pytest.mark.slow


def _account(http: httpx.Client, role: str) -> dict[str, str]:
    email = f"{role}-{secrets.token_hex(4)}@example.com"
    signup = http.post("/v1/auth/signup", json={"email": email, "password": PASSWORD, "role": role})
    assert signup.status_code == 201, signup.text
    login = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    http.headers["Authorization"] = f"Bearer {login.json()['token']}"
    return {"email": email, "password": PASSWORD}


def _serve(app: Any, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the agent did not start"
        time.sleep(0.05)
    return server, thread


def _wait(what: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)
    return result


def test_platform_through_nginx_in_front_of_three_replicas(
    tmp_path: Path, replica_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    nginx_binary()
    keys = shared_keys(tmp_path / "keys")  # one set of keys for every replica
    replicas = [
        BackendProcess(tmp_path / f"replica{i}", database_url=replica_database, **keys)
        for i in range(3)
    ]
    with nginx_proxy(tmp_path / "nginx", [f"127.0.0.1:{r.port}" for r in replicas]) as proxy:
        for replica in replicas:
            replica.env.update(
                KUMULUS_BACKEND_PUBLIC_URL=proxy.url,
                KUMULUS_BACKEND_TRUSTED_PROXIES='["127.0.0.1"]',
                KUMULUS_BACKEND_LOGIN_RATE_PER_IP="1/minute",
            )
        try:
            start_all(replicas)
            _through_the_proxy(tmp_path, proxy, replicas, monkeypatch)
        finally:
            stop_all(replicas)


def _through_the_proxy(
    tmp_path: Path,
    proxy: Proxy,
    replicas: list[BackendProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    healthz = [httpx.get(r.url + "/healthz", timeout=5).json() for r in replicas]
    assert len({h["backendAddress"] for h in healthz}) == 1  # one key, recorded once

    with (
        proxy.client("127.0.0.2") as developer,
        proxy.client("127.0.0.3") as provider,
    ):
        _account(developer, "developer")
        _account(provider, "provider")
        assert developer.post("/v1/ssh-keys", json={"name": "e2e", "publicKey": SSH_KEY}).is_success

        # The provider's agent talks to the backend through the proxy, over TLS.
        monkeypatch.setenv("SSL_CERT_FILE", str(proxy.ca_file))
        wallet_mnemonic = new_mnemonic()
        wallet = keypair_from_mnemonic(wallet_mnemonic)
        assert link_wallet(provider, wallet).status_code == 200
        agent_port = free_port()
        settings = AgentSettings(
            state_dir=tmp_path / "agent", port=agent_port, ssh_bind="127.0.0.1",
            ssh_port_min=41100, ssh_port_max=41999, cpu_capacity=8, memory_capacity="16g",
            disk_capacity="200g", ssh_ready_timeout=0.05, lxcfs_dir=tmp_path / "lxcfs",
            backend_url=proxy.url, stats_interval=1.0,
        )  # fmt: skip
        # The host signs with a key of its own; the wallet only delegates it.
        host_key = ensure_host_key(settings)
        server, thread = _serve(create_agent(settings, FakeRuntime(), keypair=host_key), agent_port)
        try:
            admin = {"Authorization": f"Bearer {settings.token_path.read_text().strip()}"}
            info = httpx.get(f"http://127.0.0.1:{agent_port}/v1/host", headers=admin).json()
            token = provider.post("/v1/provider/host-tokens").json()["token"]
            host = register(
                state_dir=settings.state_dir, backend_key_file=settings.backend_key_path,
                keypair=host_key, backend_url=proxy.url, provider_token=token,
                api_url=f"http://127.0.0.1:{agent_port}", public_ip="127.0.0.1", host_info=info,
            ).host_id  # fmt: skip
            delegate(proxy.url, wallet, host, host_key.ss58_address)

            def last_beat() -> Any:
                return provider.get(f"/v1/provider/hosts/{host}").json()["lastHeartbeatAt"]

            first = _wait("the first heartbeat through the proxy", last_beat)
            _wait("heartbeats to keep coming", lambda: last_beat() > first)

            vm = developer.post(
                "/v1/vms",
                json={"username": "dev", "sshKey": SSH_KEY, "cpu": 1, "memory": "1g"},
                headers={"Prefer": "wait=30"},
            )
            assert vm.status_code in (201, 202), vm.text
            vm_id = vm.json()["id"]
            _wait(
                "the VM to run",
                lambda: developer.get(f"/v1/vms/{vm_id}").json()["actualState"] == "running",
            )

            _spread_and_guarded(proxy, replicas, developer)
            _client_addresses_and_failover(proxy, replicas, developer)
        finally:
            server.should_exit = True
            thread.join(timeout=15)


def _spread_and_guarded(
    proxy: Proxy, replicas: list[BackendProcess], developer: httpx.Client
) -> None:
    for _ in range(9):
        assert developer.get("/v1/vms").status_code == 200
    for replica in replicas:  # each replica logs the requests it served
        assert '"GET /v1/vms HTTP/1.1" 200' in replica.log_path.read_text()

    # /metrics answers on each replica's own port (loopback), never through the proxy.
    assert httpx.get(replicas[0].url + "/metrics", timeout=10).status_code == 200
    for path in (b"/metrics", b"/metrics?x=1", b"//metrics", b"/%6Detrics", b"/metrics/"):
        url = httpx.URL(proxy.url).copy_with(raw_path=path)  # sent as written
        assert developer.get(url).status_code == 404, path

    hsts = developer.get("/healthz").headers.get("strict-transport-security")
    assert hsts is not None and "max-age" in hsts
    too_big = developer.post("/v1/ssh-keys", content=b"x" * (2 << 20))
    assert too_big.status_code == 413  # refused by nginx before any replica reads it
    redirect = httpx.get(proxy.http_url + "/v1/vms", follow_redirects=False, timeout=10)
    assert redirect.status_code == 308
    assert (
        redirect.headers["location"].startswith("https://")
        and "/v1/vms" in redirect.headers["location"]
    )


def _client_addresses_and_failover(
    proxy: Proxy, replicas: list[BackendProcess], developer: httpx.Client
) -> None:
    # Two replicas die (one without warning): the proxy keeps answering from the third.
    replicas[1].stop(signal.SIGKILL)
    replicas[2].stop()
    for _ in range(6):
        assert developer.get("/v1/vms").status_code == 200

    # Log-ins are limited to 1 a minute per client address, counted by the one replica
    # left: a second log-in from the same client is refused, one from another client is
    # not (the backend reads the address nginx appended, not the proxy's own), and what a
    # client writes into X-Forwarded-For itself does not make it someone else.
    account = _account(developer, "developer")
    with proxy.client("127.0.0.4") as one, proxy.client("127.0.0.5") as other:
        assert one.post("/v1/auth/login", json=account).status_code == 200
        assert one.post("/v1/auth/login", json=account).status_code == 429
        spoofed = one.post("/v1/auth/login", json=account, headers={"X-Forwarded-For": "127.0.0.9"})
        assert spoofed.status_code == 429
        assert other.post("/v1/auth/login", json=account).status_code == 200
