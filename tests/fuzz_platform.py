"""A whole platform on loopback for the API fuzzer: the backend (SQLite) and one agent on
the fake runtime behind it, registered as a provider's host, online (its stats job sends
signed heartbeats), each served by uvicorn on a free port; a developer with credit and an
SSH key, a provider, and the agent's admin token. Passwords are hashed with cheap argon2
parameters (the fuzzer signs up and logs in hundreds of times)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from argon2 import PasswordHasher

from kumulus.agent.app import create_app as create_agent
from kumulus.agent.host_key import ensure_host_key
from kumulus.agent.registration import register
from kumulus.backend import security
from kumulus.backend.app import create_app as create_backend
from kumulus.config import AgentSettings, BackendSettings
from kumulus.core.delegation import default_expiry, delegation_text
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from kumulus.server import create_server
from tests.fakes import FakeRuntime
from tests.generous_limits import GENEROUS_LIMITS

PASSWORD = "correct horse battery"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExoKzrGLzzNNO9d+FQVgBOqM2x6VJGMeYFHzkaLIm6b fuzz"


@dataclass
class Platform:
    backend_url: str
    agent_url: str
    developer: dict[str, str]  # request headers
    provider: dict[str, str]
    agent_admin: dict[str, str]
    host_id: str
    runtime: FakeRuntime


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _serve(app: Any, port: int) -> Iterator[str]:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"server on port {port} did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def _login(http: httpx.Client, role: str) -> dict[str, str]:
    email = f"{role}@fuzz.example.com"
    http.post("/v1/auth/signup", json={"email": email, "password": PASSWORD, "role": role})
    resp = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    resp.raise_for_status()
    return {"Authorization": f"Bearer {resp.json()['token']}"}


@contextmanager
def platform(
    tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    runtime: FakeRuntime | None = None,
    consoles: bool = False,
    **backend: Any,
) -> Iterator[Platform]:
    """The platform above; `runtime`: the agent's engine (default: a FakeRuntime);
    `consoles`: serve the consoles too (kumulus.server); `backend`: more settings."""
    monkeypatch.setattr(
        security, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )
    agent_port, backend_port = _free_port(), _free_port()
    backend_settings = BackendSettings(
        data_dir=tmp / "backend",
        public_url=f"http://127.0.0.1:{backend_port}",
        KUMULUS_DATABASE_URL=f"sqlite:///{tmp / 'backend.db'}",
        heartbeat_ttl=30,
        signup_credit="1000",
        # Its agent beats every second (stats_interval): past the 30/minute per host that
        # production allows, the host went offline for stretches, and creates failed.
        **{**GENEROUS_LIMITS, **backend},
    )
    wallet_mnemonic = new_mnemonic()
    agent_settings = AgentSettings(
        state_dir=tmp / "agent",
        port=agent_port,
        ssh_bind="127.0.0.1",
        ssh_port_min=41100,
        ssh_port_max=41999,
        cpu_capacity=64,
        memory_capacity="256g",
        disk_capacity="4t",
        firewall=True,
        ssh_ready_timeout=0.05,
        lxcfs_dir=tmp / "lxcfs",
        backend_url=f"http://127.0.0.1:{backend_port}",
        stats_interval=1.0,
    )
    # The host signs with a key of its own; the wallet delegates it and stays off the host.
    wallet = keypair_from_mnemonic(wallet_mnemonic)
    host_key = ensure_host_key(agent_settings)
    runtime = runtime or FakeRuntime()
    agent_app = create_agent(agent_settings, runtime, keypair=host_key)
    with (
        _serve(
            (create_server if consoles else create_backend)(backend_settings), backend_port
        ) as backend_url,
        _serve(agent_app, agent_port) as agent_url,
        httpx.Client(base_url=backend_url, timeout=30) as http,
    ):
        provider = _login(http, "provider")
        challenge = http.post("/v1/provider/wallet/challenge", headers=provider).json()
        http.post(
            "/v1/provider/wallet/link",
            headers=provider,
            json={
                "challengeId": challenge["challengeId"],
                "address": wallet.ss58_address,
                "signature": "0x" + bytes(wallet.sign(challenge["message"].encode())).hex(),
            },
        ).raise_for_status()
        host_token = http.post("/v1/provider/host-tokens", headers=provider).json()["token"]
        admin = {"Authorization": f"Bearer {agent_settings.token_path.read_text().strip()}"}
        info = httpx.get(f"{agent_url}/v1/host", headers=admin, timeout=30).json()
        reg = register(
            state_dir=agent_settings.state_dir,
            backend_key_file=agent_settings.backend_key_path,
            keypair=host_key,
            backend_url=backend_url,
            provider_token=host_token,
            api_url=agent_url,
            public_ip="127.0.0.1",
            host_info=info,
        )
        text = delegation_text(reg.host_id, host_key.ss58_address, default_expiry())
        http.post(
            "/v1/hosts/delegation",
            json={"message": text, "signature": "0x" + bytes(wallet.sign(text.encode())).hex()},
        ).raise_for_status()
        developer = _login(http, "developer")
        http.post(
            "/v1/ssh-keys", headers=developer, json={"name": "fuzz", "publicKey": SSH_KEY}
        ).raise_for_status()
        deadline = time.monotonic() + 30
        while (
            http.get(f"/v1/provider/hosts/{reg.host_id}", headers=provider).json()["status"]
            != "online"
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("the fake host sent no heartbeat")
            time.sleep(0.2)
        yield Platform(backend_url, agent_url, developer, provider, admin, reg.host_id, runtime)
