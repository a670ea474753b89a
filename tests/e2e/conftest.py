"""End-to-end fixtures: a real dockerd, the real VM image, real agents as subprocesses, the
real OpenSSH client. Tests share one engine and one image; each cleans up its VMs."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from kumulus.config import AgentSettings
from kumulus.core.signing import new_mnemonic, write_secret_file
from tests.e2e.agent_process import AgentProcess
from tests.e2e.browser import chromium
from tests.e2e.chain import dev_chain
from tests.e2e.replicas import replica_schema
from tests.e2e.systemd_host import prebuild

# One browser and one chain for the whole session, shared by every module.
__all__ = ["chromium", "dev_chain"]

IMAGE = AgentSettings().image


def pytest_collection_finish(session: pytest.Session) -> None:
    # A fresh machine debootstraps the systemd host for a minute or more: while other tests run.
    if session.config.option.collectonly:
        return
    wanted = os.environ.get("KUMULUS_E2E_SYSTEMD", "0") in ("1", "full")
    if wanted and any(item.get_closest_marker("systemd") for item in session.items):
        prebuild()


@pytest.fixture(scope="session")
def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:
        if os.environ.get("KUMULUS_E2E_REQUIRED"):
            pytest.fail(f"Docker engine required but not reachable: {exc}")
        pytest.skip(f"no Docker engine: {exc}")
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        message = f"VM image {IMAGE} missing: run `kumulus image build`"
        if os.environ.get("KUMULUS_E2E_REQUIRED"):
            pytest.fail(message)
        pytest.skip(message)
    return client


class StatsReceiver:
    """A minimal stand-in for the backend's heartbeat endpoint: records what arrives."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.received.append({"path": self.path, "body": json.loads(body)})
                self.send_response(202)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="session")
def wallet_mnemonic() -> str:
    return new_mnemonic()


@pytest.fixture(scope="session")
def stats_receiver() -> Iterator[StatsReceiver]:
    receiver = StatsReceiver()
    yield receiver
    receiver.server.shutdown()


@pytest.fixture(scope="session")
def agent(
    docker_client: docker.DockerClient,
    tmp_path_factory: pytest.TempPathFactory,
    wallet_mnemonic: str,
    stats_receiver: StatsReceiver,
) -> Iterator[AgentProcess]:
    """The shared agent: wallet configured, stats every second to the test receiver."""
    state = tmp_path_factory.mktemp("agent")
    write_secret_file(state / "wallet-mnemonic", wallet_mnemonic)
    proc = AgentProcess(
        state,
        (23000, 23499),
        KUMULUS_AGENT_BACKEND_URL=stats_receiver.url,
        KUMULUS_AGENT_STATS_INTERVAL="1",
    ).start()
    yield proc
    proc.stop()


@pytest.fixture
def api(agent: AgentProcess) -> Iterator[httpx.Client]:
    with agent.client() as client:
        yield client


VMFactory = Callable[..., dict[str, Any]]


@pytest.fixture
def make_vm(api: httpx.Client, ssh_keypair: tuple[Path, str]) -> Iterator[VMFactory]:
    """Create VMs through the agent's API; every one is deleted after the test."""
    created: list[str] = []

    def make(client: httpx.Client | None = None, **over: Any) -> dict[str, Any]:
        body = {
            "username": "devtest",
            "sshKey": ssh_keypair[1],
            "cpu": 0.5,
            "memory": "256m",
            "disk": "2g",
            **over,
        }
        resp = (client or api).post("/v1/vms", json=body)
        assert resp.status_code == 201, resp.text
        vm: dict[str, Any] = resp.json()
        created.append(vm["vmId"])
        return vm

    yield make
    for vm_id in created:
        api.delete(f"/v1/vms/{vm_id}")


def ssh(
    key: Path, vm: dict[str, Any], command: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run `command` in the VM over real SSH, as the developer would."""
    return subprocess.run(
        [
            "ssh",
            "-i",
            str(key),
            "-p",
            str(vm["sshPort"]),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "LogLevel=ERROR",
            f"{vm['username']}@{vm['sshHost']}",
            command,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def replica_database() -> Iterator[str]:
    """A database URL for backend replicas: a PostgreSQL schema of their own."""
    with replica_schema() as url:
        yield url
