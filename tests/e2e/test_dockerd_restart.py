"""VMs survive a restart of the Docker engine (restart policy); stopped ones stay stopped.

Marked `disruptive`: it restarts the engine every e2e test shares, so it runs on its own."""

import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.agent_process import AgentProcess
from tests.e2e.conftest import ssh
from tests.e2e.dockerd import start_dockerd, stop_dockerd

pytestmark = [pytest.mark.disruptive, pytest.mark.slow]


def _restart_dockerd() -> None:
    start_dockerd(stop_dockerd(signal.SIGTERM))


def test_running_vms_come_back_after_an_engine_restart(
    docker_client,
    tmp_path: Path,
    ssh_keypair: tuple[Path, str],  # type: ignore[no-untyped-def]
) -> None:
    # guard every 2 s: the agent re-applies disk limits that the engine's shutdown dropped.
    agent = AgentProcess(
        tmp_path / "agent", (23530, 23539), KUMULUS_AGENT_GUARD_INTERVAL="2"
    ).start()
    body = {
        "username": "devtest",
        "sshKey": ssh_keypair[1],
        "cpu": 0.25,
        "memory": "128m",
        "disk": "1g",
    }
    ids: list[str] = []
    try:
        with agent.client() as api:
            running = api.post("/v1/vms", json=body).json()
            stopped = api.post("/v1/vms", json=body).json()
            ids = [running["vmId"], stopped["vmId"]]
            assert ssh(ssh_keypair[0], running, "echo kept > ~/f").returncode == 0
            api.post(f"/v1/vms/{stopped['vmId']}/stop")

        _restart_dockerd()

        with agent.client() as api:
            deadline = time.monotonic() + 60
            status = ""
            while time.monotonic() < deadline:
                try:
                    status = api.get(f"/v1/vms/{running['vmId']}").json()["status"]
                except httpx.HTTPError:
                    status = ""
                if status == "Running":
                    break
                time.sleep(0.5)
            assert status == "Running"
            assert api.get(f"/v1/vms/{stopped['vmId']}").json()["status"] == "Stopped"
            assert ssh(ssh_keypair[0], running, "cat ~/f").stdout.strip() == "kept"
            # The 1g disk limit still holds after the restart (Docker drops qgroup limits
            # when it shuts down; the agent puts them back).
            time.sleep(5)
            out = ssh(
                ssh_keypair[0],
                running,
                "dd if=/dev/zero of=$HOME/fill bs=1M count=1500 2>&1; echo rc=$?",
                timeout=120,
            )
            assert "rc=1" in out.stdout, out.stdout
            assert "Disk quota exceeded" in out.stdout or "No space left" in out.stdout
    finally:
        with agent.client() as api:
            for vm_id in ids:
                api.delete(f"/v1/vms/{vm_id}")
        agent.stop()
