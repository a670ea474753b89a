"""Inside a VM, nproc, free, /proc/cpuinfo, getconf and /proc/meminfo tell the VM's own size
(lxcfs + a cpuset), and a VM whose lxcfs files went stale with an lxcfs restart is restarted
by the agent, its files kept."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from kumulus.agent.lxcfs import Lxcfs
from tests.e2e.agent_process import AgentProcess
from tests.e2e.conftest import VMFactory, ssh

pytestmark = pytest.mark.slow

SIZES = (
    "nproc; free -m | awk '/^Mem:/ {print $2}'; grep -c ^processor /proc/cpuinfo; "
    "getconf _NPROCESSORS_ONLN; awk '/^MemTotal:/ {print $2}' /proc/meminfo"
)


def _require(reason: str) -> None:
    if os.environ.get("KUMULUS_E2E_REQUIRED"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def lxcfs_up(api: httpx.Client) -> None:
    """The machine's lxcfs (setup.sh starts it) as the shared agent sees it."""
    host = api.get("/v1/host").json()
    if not host["lxcfsActive"]:
        _require(f"lxcfs is not active: {host['lxcfsDetail']} (scripts/setup.sh starts it)")


def sizes(key: Path, vm: dict[str, object]) -> list[int]:
    out = ssh(key, vm, SIZES)
    assert out.returncode == 0, out.stdout + out.stderr
    return [int(line) for line in out.stdout.split()]


def test_a_1_vcpu_512m_vm_sees_1_cpu_and_512m(
    lxcfs_up: None, make_vm: VMFactory, ssh_keypair: tuple[Path, str]
) -> None:
    vm = make_vm(cpu=1, memory="512m", disk="2g")
    nproc, free_total, cpuinfo, getconf, meminfo_kb = sizes(ssh_keypair[0], vm)
    assert (nproc, cpuinfo, getconf) == (1, 1, 1)
    assert meminfo_kb == 512 * 1024
    assert free_total == 512
    # uptime is the VM's, not the host's.
    uptime = ssh(ssh_keypair[0], vm, "cut -d. -f1 /proc/uptime").stdout.strip()
    assert int(uptime) < 120


def test_a_2_vcpu_vm_sees_2_cpus(
    lxcfs_up: None, make_vm: VMFactory, ssh_keypair: tuple[Path, str]
) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs a host with two cores")
    vm = make_vm(cpu=2, memory="256m", disk="2g")
    nproc, free_total, cpuinfo, getconf, meminfo_kb = sizes(ssh_keypair[0], vm)
    assert (nproc, cpuinfo, getconf) == (2, 2, 2)
    assert meminfo_kb == 256 * 1024 and free_total == 256


class OwnLxcfs:
    """An lxcfs of the test's own on a private mount point, so killing it touches nothing
    else on the machine."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["lxcfs", "--enable-cfs", "--enable-loadavg", "-p", f"{self.root}.pid", str(self.root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not Lxcfs(self.root).probe().active:
            assert time.monotonic() < deadline, "lxcfs did not come up"
            time.sleep(0.1)

    def crash(self) -> None:
        """SIGKILL, as a crash: the mount stays behind, dead (ENOTCONN), as supervisors find
        it; unmount it the way they do before starting lxcfs again."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        subprocess.run(["umount", "-l", str(self.root)], check=False, capture_output=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        subprocess.run(["umount", "-l", str(self.root)], check=False, capture_output=True)


@pytest.fixture
def own_lxcfs(tmp_path: Path) -> Iterator[OwnLxcfs]:
    if shutil.which("lxcfs") is None or not os.path.exists("/dev/fuse"):
        _require("lxcfs or /dev/fuse missing (scripts/setup.sh installs lxcfs)")
    lxcfs = OwnLxcfs(tmp_path / "lxcfs")
    lxcfs.start()
    yield lxcfs
    lxcfs.stop()


def test_vms_broken_by_an_lxcfs_restart_are_restarted_with_their_files(
    docker_client: docker.DockerClient,
    own_lxcfs: OwnLxcfs,
    tmp_path: Path,
    ssh_keypair: tuple[Path, str],
) -> None:
    agent = AgentProcess(
        tmp_path / "agent",
        (23660, 23669),
        KUMULUS_AGENT_LXCFS_DIR=str(own_lxcfs.root),
        KUMULUS_AGENT_LXCFS_INTERVAL="0.5",
    ).start()
    key = ssh_keypair[0]
    try:
        with agent.client() as api:
            resp = api.post(
                "/v1/vms",
                json={
                    "username": "devtest",
                    "sshKey": ssh_keypair[1],
                    "cpu": 0.5,
                    "memory": "256m",
                    "disk": "1g",
                },
            )
            assert resp.status_code == 201, resp.text
            vm = resp.json()
            assert sizes(key, vm)[1] == 256
            assert ssh(key, vm, "echo kept > ~/before").returncode == 0
            container = docker_client.containers.get(f"kumulus-{vm['vmId']}")
            started = container.attrs["State"]["StartedAt"]

            own_lxcfs.crash()
            broken = ssh(key, vm, "cat /proc/meminfo")
            assert "Transport endpoint is not connected" in broken.stderr + broken.stdout
            # lxcfs is down: the agent waits (a restart now would fail on the bind mounts).
            time.sleep(1.5)
            container.reload()
            assert container.attrs["State"]["StartedAt"] == started
            assert api.get("/v1/host").json()["lxcfsActive"] is False

            own_lxcfs.start()
            deadline = time.monotonic() + 60
            while True:
                container.reload()
                if container.attrs["State"]["StartedAt"] != started:
                    break
                assert time.monotonic() < deadline, "the agent did not restart the VM"
                time.sleep(0.2)
            deadline = time.monotonic() + 30
            while api.get(f"/v1/vms/{vm['vmId']}").json()["status"] != "Running":
                assert time.monotonic() < deadline, "the VM did not come back"
                time.sleep(0.2)
            assert sizes(key, vm)[1] == 256
            assert ssh(key, vm, "cat ~/before").stdout.strip() == "kept"
            assert "lost its lxcfs files" in agent.log_path.read_text()
    finally:
        with agent.client() as api:
            for item in api.get("/v1/vms").json()["items"]:
                api.delete(f"/v1/vms/{item['vmId']}")
        agent.stop()


def test_disk_usage_against_the_quota_grows_with_what_the_vm_writes(
    api: httpx.Client, make_vm: VMFactory, ssh_keypair: tuple[Path, str]
) -> None:
    """`df` in the VM shows the host's filesystem; the agent's answer tells the quota's use."""
    vm = make_vm(cpu=0.5, memory="256m", disk="2g")
    before = api.get(f"/v1/vms/{vm['vmId']}").json()["diskUsedBytes"]
    if before is None:
        _require("this engine reports no disk usage (not btrfs with quotas in sysfs)")
    out = ssh(ssh_keypair[0], vm, "head -c 64M /dev/urandom > ~/blob && sync && echo ok")
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr
    after = before
    deadline = time.monotonic() + 40  # qgroup numbers move when btrfs commits
    while after - before < 60 << 20 and time.monotonic() < deadline:
        time.sleep(1)
        after = api.get(f"/v1/vms/{vm['vmId']}").json()["diskUsedBytes"]
    assert after - before >= 60 << 20, (before, after)
    assert after < 2 << 30
