"""VMs survive a restart of the Docker engine (restart policy); stopped ones stay stopped.

Marked `disruptive`: it restarts the engine every e2e test shares, so it runs on its own."""

import os
import signal
import subprocess
import time
from pathlib import Path

import docker
import httpx
import pytest

from tests.e2e.agent_process import AgentProcess
from tests.e2e.conftest import ssh

pytestmark = [pytest.mark.disruptive, pytest.mark.slow]


def _restart_dockerd() -> None:
    pid = int(
        subprocess.run(
            ["pidof", "dockerd"], capture_output=True, text=True, check=True
        ).stdout.split()[0]
    )
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists(), "dockerd did not stop"
    log_path = Path("/var/log/kumulus/dockerd.log")
    log = log_path.open("ab") if log_path.parent.exists() else subprocess.DEVNULL
    subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            docker.from_env().ping()
            return
        except Exception:
            time.sleep(0.5)
    raise AssertionError("dockerd did not come back")


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
