"""A VM's sshd serves the host key its agent reported, from the first boot on and across
stop/start and an agent restart: real ssh with StrictHostKeyChecking=yes and a known_hosts
built from the agent's answer logs in, and with any other key it refuses. The VM's
entrypoint never makes a key of its own when the agent chose one."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import docker
import pytest

from kumulus.core.schemas import VMPublic
from tests.e2e.agent_process import AgentProcess
from tests.e2e.conftest import IMAGE


def _keyscan(vm: dict[str, Any]) -> str:
    """The ed25519 key the VM's sshd serves, as `ssh-keyscan` sees it."""
    out = subprocess.run(
        ["ssh-keyscan", "-T", "5", "-t", "ed25519", "-p", str(vm["sshPort"]), vm["sshHost"]],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    lines = [line for line in out.stdout.splitlines() if not line.startswith("#")]
    assert len(lines) == 1, (out.stdout, out.stderr)
    return " ".join(lines[0].split()[1:3])


def _strict_ssh(
    key: Path, vm: dict[str, Any], known_key: str, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """`ssh ... true` as `kumulus vm ssh` runs it, trusting only `known_key` for the VM."""
    known = tmp_path / "known_hosts"
    known.write_text(f"vm-{vm['vmId']} {known_key}\n")
    return subprocess.run(
        [
            "ssh",
            "-i",
            str(key),
            "-p",
            str(vm["sshPort"]),
            "-o",
            f"UserKnownHostsFile={known}",
            "-o",
            "GlobalKnownHostsFile=none",
            "-o",
            f"HostKeyAlias=vm-{vm['vmId']}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            "--",
            f"{vm['username']}@{vm['sshHost']}",
            "true",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _fingerprint(line: str, tmp_path: Path) -> str:
    pub = tmp_path / "reported.pub"
    pub.write_text(line + "\n")
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True)
    return out.stdout.split()[1]


@pytest.mark.slow
def test_the_reported_host_key_is_the_one_served_across_stop_start_and_agent_restart(
    docker_client: docker.DockerClient, tmp_path: Path, ssh_keypair: tuple[Path, str]
) -> None:
    state = tmp_path / "agent"
    agent = AgentProcess(state, (23700, 23709)).start()
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    wrong_key = " ".join(other.with_suffix(".pub").read_text().split()[:2])
    vm_id = None
    try:
        with agent.client() as api:
            body = {"username": "devtest", "sshKey": ssh_keypair[1], "cpu": 0.25,
                    "memory": "128m", "disk": "1g"}  # fmt: skip
            resp = api.post("/v1/vms", json=body)
            assert resp.status_code == 201, resp.text
            vm = resp.json()
            vm_id = vm["vmId"]
            host_key = vm["hostKey"]
            assert host_key.startswith("ssh-ed25519 ")
            assert vm["hostKeyFingerprint"] == _fingerprint(host_key, tmp_path)
            assert VMPublic.model_validate(vm).host_key == host_key  # as the backend reads it
            assert _keyscan(vm) == host_key

            ok = _strict_ssh(ssh_keypair[0], vm, host_key, tmp_path)
            assert ok.returncode == 0, ok.stderr
            refused = _strict_ssh(ssh_keypair[0], vm, wrong_key, tmp_path)
            assert refused.returncode != 0
            assert "Host key verification failed" in refused.stderr, refused.stderr

            assert api.post(f"/v1/vms/{vm_id}/stop").json()["status"] == "Stopped"
            started = api.post(f"/v1/vms/{vm_id}/start").json()
            assert started["status"] == "Running" and started["hostKey"] == host_key
            assert _keyscan(vm) == host_key

        agent.stop(signal.SIGKILL)
        agent = AgentProcess(state, (23700, 23709)).start()
        with agent.client() as api:
            shown = api.get(f"/v1/vms/{vm_id}").json()
        assert (shown["hostKey"], shown["hostKeyFingerprint"]) == (
            host_key,
            vm["hostKeyFingerprint"],
        )
        ok = _strict_ssh(ssh_keypair[0], vm, host_key, tmp_path)
        assert ok.returncode == 0, ok.stderr
    finally:
        if vm_id:
            with agent.client() as api:
                api.delete(f"/v1/vms/{vm_id}")
        agent.stop()


def test_the_vm_does_not_start_sshd_without_the_key_the_agent_chose(
    docker_client: docker.DockerClient, ssh_keypair: tuple[Path, str], tmp_path: Path
) -> None:
    chosen = tmp_path / "chosen"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(chosen)], check=True)
    container = docker_client.containers.run(
        IMAGE,
        detach=True,
        environment={
            "KUMULUS_USER": "devtest",
            "KUMULUS_SSH_KEY": ssh_keypair[1],
            "KUMULUS_HOST_KEY": " ".join(chosen.with_suffix(".pub").read_text().split()[:2]),
        },
        labels={"io.kumulus.test": "host-key"},
        network_mode="none",
    )
    try:
        deadline = time.monotonic() + 30
        while container.status != "exited" and time.monotonic() < deadline:
            time.sleep(0.1)
            container.reload()
        # An image from before agents chose host keys makes its own and runs sshd: rebuild.
        assert container.attrs["State"]["ExitCode"] == 65, "VM image too old? `kumulus image build`"
        assert b"the host key the agent chose is missing" in container.logs()
    finally:
        container.remove(force=True)
