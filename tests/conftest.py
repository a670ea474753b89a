from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.common import scratch_schema
from fastapi.testclient import TestClient
from hypothesis import settings

from kumulus.agent.app import create_app
from kumulus.config import AgentSettings
from tests.fakes import FakeRuntime

# Tests' agents listen on this machine (loopback): every backend a test builds calls them
# as `kumulus up` does; tests of the public-address check turn it off explicitly.
os.environ.setdefault("KUMULUS_BACKEND_ALLOW_PRIVATE_AGENTS", "true")

# No per-example deadline: CI machines are shared and slow examples are not failures
# (a property is falsified by its assertions, not by the machine's load).
settings.register_profile("kumulus", deadline=None)
settings.load_profile("kumulus")


@pytest.fixture
def ssh_keypair(tmp_path: Path) -> tuple[Path, str]:
    """A fresh ed25519 key pair made by the real ssh-keygen: (private key path, public line)."""
    key = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test@kumulus", "-f", str(key)],
        check=True,
    )
    return key, key.with_suffix(".pub").read_text().strip()


@pytest.fixture
def fake_runtime() -> FakeRuntime:
    return FakeRuntime()


@pytest.fixture
def agent_settings(tmp_path: Path) -> AgentSettings:
    return AgentSettings(
        state_dir=tmp_path / "agent",
        ssh_bind="127.0.0.1",
        ssh_port_min=40100,
        ssh_port_max=40199,
        cpu_capacity=4,
        memory_capacity="8g",
        disk_capacity="100g",
        firewall=True,  # the fake runtime's: no iptables rule is touched
        ssh_ready_timeout=0.2,
        lxcfs_dir=tmp_path / "lxcfs",  # not a mount: VMs are made without lxcfs
    )


@pytest.fixture
def fake_agent(agent_settings: AgentSettings, fake_runtime: FakeRuntime) -> Iterator[TestClient]:
    """The real agent app over a fake engine; `.token` holds the admin token.

    sshd never answers in the fake, so created VMs report "Starting", never "Running"."""
    app = create_app(agent_settings, fake_runtime, keypair=None, collect_stats=False)
    with TestClient(app) as client:
        client.token = agent_settings.token_path.read_text().strip()  # type: ignore[attr-defined]
        client.headers["Authorization"] = f"Bearer {client.token}"  # type: ignore[attr-defined]
        yield client


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/e2e needs the real engine (the `e2e` marker). Order: unit
    tests first (fast feedback), then e2e, and `disruptive` ones (engine restarts) last."""
    for item in items:
        if "/tests/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)

    def rank(item: pytest.Item) -> int:
        if item.get_closest_marker("disruptive"):
            return 2
        return 1 if item.get_closest_marker("e2e") else 0

    items.sort(key=rank)  # stable: keeps file order within each group


POSTGRES = os.environ.get("KUMULUS_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'kumulus.db'}"
        return
    if not POSTGRES:
        if os.environ.get("KUMULUS_E2E_REQUIRED"):
            pytest.fail("PostgreSQL required: set KUMULUS_TEST_POSTGRES_URL")
        pytest.skip("no PostgreSQL configured (KUMULUS_TEST_POSTGRES_URL)")
    with scratch_schema(POSTGRES, "t") as (url, _):
        yield url
