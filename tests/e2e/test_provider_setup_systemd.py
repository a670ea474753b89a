"""provider-setup.sh on a Debian 12 host with systemd as PID 1 (a container: see
systemd_host.py), the way providers' machines run it: the script installs Docker, lxcfs and
the agent, registers the host and delegates its key; a VM placed through the backend answers
over SSH and sees its own size; systemd restarts a killed agent and a killed lxcfs; after a
reboot everything is up again on its own; a second run changes nothing; --uninstall removes
the units and files.

The VM base image is the one the tests use, loaded with --vm-image (the container cannot pull
from a registry). KUMULUS_E2E_SYSTEMD=full builds it inside instead, as a host without registry
access would (debootstrap fallback; about two minutes more).

It runs only on request, when KUMULUS_E2E_SYSTEMD is `1` or `full`: CI does not set it (it
takes 150-270 s warm, about 410 s on a fresh machine). The agent's unit that the script
writes is linted in CI all the same (tests/deploy/test_systemd_units_verify.py)."""

from __future__ import annotations

import os
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from kumulus.config import AgentSettings
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic, write_secret_file
from tests.e2e.agent_process import BackendProcess, link_wallet
from tests.e2e.conftest import ssh
from tests.e2e.systemd_host import SHARED, SystemdHost, systemd_host
from tests.e2e.test_marketplace import _account, _wait

pytestmark = [
    pytest.mark.slow,
    pytest.mark.systemd,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(
        os.environ.get("KUMULUS_E2E_SYSTEMD", "0") not in ("1", "full"),
        reason="the systemd host test runs with KUMULUS_E2E_SYSTEMD=1 (or full)",
    ),
]

BUILD_IMAGE_INSIDE = os.environ.get("KUMULUS_E2E_SYSTEMD") == "full"
UNIT = "/etc/systemd/system/kumulus-agent.service"
LXCFS_DROPIN = "/etc/systemd/system/lxcfs.service.d/kumulus.conf"


class _Clock:
    """Prints how long each step took (pytest shows it with -s, or when the test fails)."""

    def __init__(self) -> None:
        self.start = self.last = time.monotonic()

    def lap(self, step: str) -> None:
        now = time.monotonic()
        print(f"[systemd] {step}: {now - self.last:.0f}s (total {now - self.start:.0f}s)")
        self.last = now


def _restarted(host: SystemdHost, unit: str, before: dict[str, str]) -> dict[str, str]:
    """Wait until systemd has `unit` active again under a new main process."""

    def again() -> dict[str, str] | None:
        now = host.unit(unit, "MainPID", "NRestarts", "ActiveState")
        fresh = now["MainPID"] not in ("0", before["MainPID"])
        return now if fresh and now["ActiveState"] == "active" else None

    after: dict[str, str] = _wait(again, timeout=30)
    assert int(after["NRestarts"]) > int(before["NRestarts"])
    return after


def _settled(dev: httpx.Client, vm_id: str, state: str) -> dict[str, Any]:
    """Wait until the backend says the VM is in `state` (its host did the change)."""
    return _wait(  # type: ignore[no-any-return]
        lambda: (vm := dev.get(f"/v1/vms/{vm_id}").json())["actualState"] == state and vm,
        timeout=60,
    )


def _heard_since(prov: httpx.Client, since: float) -> bool:
    """Whether the provider's one host is online with a heartbeat newer than `since`."""
    host = prov.get("/v1/provider/hosts").json()["items"][0]
    heard = host["lastHeartbeatAt"]
    return bool(
        host["status"] == "online" and heard and datetime.fromisoformat(heard).timestamp() > since
    )


def _vm_sees(key: Path, vm: dict[str, Any]) -> str:
    done = ssh(key, vm, "whoami; nproc; grep MemTotal /proc/meminfo")
    return done.stdout if done.returncode == 0 else f"ssh {done.returncode}: {done.stderr}"


def test_setup_script_under_systemd(
    docker_client: docker.DockerClient, tmp_path: Path, ssh_keypair: tuple[Path, str]
) -> None:
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        # systemd inside with the host's cgroup namespace would take over the host's own
        # unified hierarchy; a private namespace needs flags not yet checked on such a host.
        pytest.skip("cgroup v2 host: the systemd container is only set up for cgroup v1")
    clock = _Clock()
    shared = tmp_path / "shared"
    shared.mkdir()
    if not BUILD_IMAGE_INSIDE:
        image = AgentSettings().image
        subprocess.run(["docker", "save", "-o", str(shared / "vm-image.tar"), image], check=True)

    with systemd_host(docker_client, shared) as host:
        clock.lap("VM image saved; systemd host image ready and booted")
        backend = BackendProcess(tmp_path / "backend", host=host.gateway).start()
        anon = httpx.Client(base_url=backend.url, timeout=60)
        try:
            mnemonic = new_mnemonic()
            prov = _account(anon, "systemd@example.com", "provider")
            prov.put("/v1/provider/profile", json={"name": "Acme", "country": "DE", "region": "eu"})
            assert link_wallet(prov, keypair_from_mnemonic(mnemonic)).status_code == 200
            token = prov.post("/v1/provider/host-tokens").json()["token"]
            write_secret_file(shared / "mnemonic", mnemonic)
            (shared / "provider-setup.sh").write_bytes(
                httpx.get(f"{backend.url}/provider-setup.sh").content
            )

            def setup(*extra: str) -> subprocess.CompletedProcess[str]:
                args = [
                    "--token", token, "--mnemonic-file", f"{SHARED}/mnemonic", "--insecure-http",
                    "--yes", "--public-ip", host.ip,
                ]  # fmt: skip
                if not BUILD_IMAGE_INSIDE:
                    args += ["--vm-image", f"{SHARED}/vm-image.tar"]
                return host.run("bash", f"{SHARED}/provider-setup.sh", *args, *extra, timeout=1200)

            clock.lap("backend and provider account")
            first = setup()
            clock.lap("first setup run")
            assert first.returncode == 0, first.stderr[-4000:]
            assert "started the kumulus-agent service (systemd" in first.stderr
            assert "lxcfs answers on /var/lib/lxcfs" in first.stderr, host.journal("lxcfs")
            if BUILD_IMAGE_INSIDE:
                assert "building offline" in first.stderr

            # Units: the agent's own, lxcfs's with our drop-in, Docker's; all start at boot.
            for unit in ("kumulus-agent", "lxcfs", "docker"):
                assert host.sh(f"systemctl is-enabled {unit}") == "enabled", unit
                assert host.sh(f"systemctl is-active {unit}") == "active", host.journal(unit)
            assert "Restart=always" in host.sh(f"cat {UNIT}")
            assert "--enable-cfs" in host.unit("lxcfs", "ExecStart")["ExecStart"]

            # Registered, its key delegated, online.
            hosts = _wait(
                lambda: [
                    h for h in prov.get("/v1/provider/hosts").json()["items"]
                    if h["status"] == "online"
                ],
                timeout=60,
            )  # fmt: skip
            assert len(hosts) == 1 and hosts[0]["hostKeyState"] == "delegated", hosts
            assert hosts[0]["publicIp"] == host.ip

            # A developer's VM lands on it, answers over SSH and sees its own size.
            dev = _account(anon, "systemd-dev@example.com", "developer")
            made = dev.post(
                "/v1/vms",
                json={
                    "username": "erin", "sshKey": ssh_keypair[1], "cpu": 1, "memory": "256m",
                    "disk": "1g",
                },
            )  # fmt: skip
            assert made.status_code == 201, made.text
            vm = made.json()
            assert vm["hostId"] == hosts[0]["id"] and vm["sshHost"] == host.ip
            sees = "erin\n1\nMemTotal:         262144 kB\n"
            assert _vm_sees(ssh_keypair[0], vm) == sees
            clock.lap("host online, VM placed and reached")

            # systemd restarts a killed agent, which serves the backend again.
            before = host.unit("kumulus-agent", "MainPID", "NRestarts")
            host.sh("systemctl kill -s KILL kumulus-agent")
            _restarted(host, "kumulus-agent", before)
            host.sh("until curl -fsS http://127.0.0.1:8000/healthz; do sleep 0.2; done", 60)
            assert dev.post(f"/v1/vms/{vm['id']}/stop").status_code in (200, 202)
            _settled(dev, vm["id"], "stopped")
            assert dev.post(f"/v1/vms/{vm['id']}/start").status_code in (200, 202)
            vm = _settled(dev, vm["id"], "running")
            assert _wait(lambda: _vm_sees(ssh_keypair[0], vm) == sees)

            clock.lap("agent killed and restarted")

            # And a killed lxcfs: systemd mounts it again (its dead mount unmounted first),
            # the agent restarts the VM whose files it broke.
            before = host.unit("lxcfs", "MainPID", "NRestarts")
            host.sh("systemctl kill -s KILL lxcfs")
            _restarted(host, "lxcfs", before)
            host.sh("timeout 5 head -c 9 /var/lib/lxcfs/proc/meminfo")
            assert _wait(lambda: _vm_sees(ssh_keypair[0], vm) == sees, timeout=60)

            clock.lap("lxcfs killed and restarted")

            # A reboot: the engine, lxcfs and the agent come back by themselves, so does the
            # VM, and the host reports in again.
            rebooted = time.time()
            host.reboot()
            for unit in ("kumulus-agent", "lxcfs", "docker"):
                assert host.sh(f"systemctl is-active {unit} || true") == "active", unit
            assert _wait(lambda: _vm_sees(ssh_keypair[0], vm) == sees, timeout=60)
            assert _wait(lambda: _heard_since(prov, rebooted), timeout=60)

            clock.lap("reboot")

            # Run again: nothing changes, no second host.
            agent_pid = host.unit("kumulus-agent", "MainPID")["MainPID"]
            unit_text = host.sh(f"cat {UNIT} {LXCFS_DROPIN}")
            second = setup()
            assert second.returncode == 0, second.stderr[-4000:]
            for said in ("is up to date", "already registered", "nothing changed"):
                assert said in second.stderr, second.stderr[-3000:]
            assert host.unit("kumulus-agent", "MainPID")["MainPID"] == agent_pid
            assert host.sh(f"cat {UNIT} {LXCFS_DROPIN}") == unit_text
            assert len(prov.get("/v1/provider/hosts").json()["items"]) == 1
            assert _vm_sees(ssh_keypair[0], vm) == sees

            clock.lap("second setup run")

            # Uninstall: the agent's unit, our lxcfs drop-in, the program and the VM are gone.
            gone = host.run("bash", f"{SHARED}/provider-setup.sh", "--uninstall", "--yes")
            assert gone.returncode == 0, gone.stderr[-3000:]
            assert "removed 1 VM(s)" in gone.stderr
            left = host.sh(
                f"ls -d {UNIT} {LXCFS_DROPIN} /opt/kumulus/venv /opt/kumulus/agent.env "
                "/usr/local/bin/kumulus 2>/dev/null || true"
            )
            assert left == ""
            assert host.unit("kumulus-agent", "LoadState", "ActiveState") == {
                "LoadState": "not-found",
                "ActiveState": "inactive",
            }
            assert host.sh("docker ps -aq") == ""
            assert host.run("curl", "-fsS", "http://127.0.0.1:8000/healthz").returncode != 0
            clock.lap("uninstall")
        finally:
            anon.close()
            backend.stop()
