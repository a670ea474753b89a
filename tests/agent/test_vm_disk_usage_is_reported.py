"""The agent reads each VM's disk usage against its quota from the kernel (the btrfs qgroup
of the VM's subvolume, in sysfs; no command) and reports it in its VM answers and its signed
heartbeats; where it cannot tell, it says nothing rather than a guess."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from kumulus.agent import disk_usage
from kumulus.agent.btrfs_quota import enable_simple_quota
from kumulus.agent.disk_limits import DiskLimits
from kumulus.agent.stats import StatsCollector
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic

FSID = "21a4aaec-f228-488c-b8a4-3ff469415e36"


def _sysfs(root: Path, subvolume_id: int, referenced: str) -> Path:
    qgroup = root / FSID / "qgroups" / f"0_{subvolume_id}"
    qgroup.mkdir(parents=True)
    (qgroup / "referenced").write_text(referenced)
    (qgroup.parent / "inconsistent").write_text("0\n")
    return root


def test_usage_is_the_subvolumes_qgroup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sysfs = _sysfs(tmp_path / "sys", 2836, "288817152\n")
    monkeypatch.setattr(disk_usage, "subvolume_ids", lambda path: (FSID, 2836))
    assert disk_usage.used_bytes(tmp_path, sysfs) == 288817152
    (sysfs / FSID / "qgroups" / "inconsistent").write_text("1\n")
    assert disk_usage.used_bytes(tmp_path, sysfs) is None  # stale numbers: none
    (sysfs / FSID / "qgroups" / "inconsistent").write_text("0\n")
    monkeypatch.setattr(disk_usage, "subvolume_ids", lambda path: (FSID, 9999))
    assert disk_usage.used_bytes(tmp_path, sysfs) is None  # quotas off: no qgroup


@pytest.fixture
def btrfs(tmp_path: Path) -> Iterator[Path]:
    """A small btrfs of the test's own (loop file) with simple quotas on, mounted."""
    if os.geteuid() != 0 or shutil.which("mkfs.btrfs") is None:
        pytest.skip("needs root and mkfs.btrfs")
    image, mnt = tmp_path / "fs.img", tmp_path / "mnt"
    mnt.mkdir()
    with image.open("wb") as f:
        f.truncate(256 << 20)
    subprocess.run(["mkfs.btrfs", "-q", str(image)], check=True, capture_output=True)
    if subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=False).returncode:
        pytest.skip("cannot mount a loop file here")
    try:
        try:
            enable_simple_quota(str(mnt))
        except OSError:
            pytest.skip("this kernel has no btrfs simple quotas")
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_a_real_subvolume_counts_what_was_written(btrfs: Path) -> None:
    subprocess.run(["btrfs", "subvolume", "create", str(btrfs / "vm")], check=True)
    assert disk_usage.used_bytes(btrfs / "vm") == 0
    (btrfs / "vm" / "blob").write_bytes(os.urandom(16 << 20))
    os.sync()  # qgroup numbers move when btrfs commits
    used = disk_usage.used_bytes(btrfs / "vm")
    assert used is not None and 16 << 20 <= used < 17 << 20


def test_not_a_btrfs_subvolume_is_unknown(tmp_path: Path) -> None:
    # The real ioctls on a directory that is not a btrfs subvolume (tmpfs, ext4) fail.
    if disk_usage.used_bytes(Path("/proc")) is not None:  # pragma: no cover
        pytest.fail("/proc read as a btrfs subvolume")
    assert disk_usage.used_bytes(tmp_path / "missing") is None


def test_docker_roots_map_containers_to_their_subvolume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mounts = tmp_path / "image" / "btrfs" / "layerdb" / "mounts" / "c0ffee"
    mounts.mkdir(parents=True)
    (mounts / "mount-id").write_text("abc123\n")
    (tmp_path / "btrfs" / "subvolumes" / "abc123").mkdir(parents=True)
    seen: list[Path] = []
    monkeypatch.setattr(disk_usage, "used_bytes", lambda path: seen.append(path) or 5 << 20)
    assert DiskLimits(str(tmp_path), "btrfs").used("c0ffee") == 5 << 20
    assert seen == [tmp_path / "btrfs" / "subvolumes" / "abc123"]
    assert DiskLimits(str(tmp_path), "btrfs").used("unknown") is None
    assert DiskLimits(str(tmp_path), "overlay2").used("c0ffee") is None


def test_answers_and_heartbeats_carry_the_usage(
    fake_agent: TestClient, ssh_keypair: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    body = {"username": "dev", "sshKey": ssh_keypair[1], "cpu": 0.5, "memory": "256m"}
    made = fake_agent.post("/v1/vms", json={**body, "disk": "2g"}).json()
    assert made["diskUsedBytes"] is None  # the fake engine has no btrfs subvolume
    monkeypatch.setattr(DiskLimits, "used", lambda self, container_id: 7 << 20)
    assert fake_agent.get(f"/v1/vms/{made['vmId']}").json()["diskUsedBytes"] == 7 << 20
    assert fake_agent.get("/v1/vms").json()["items"][0]["diskUsedBytes"] == 7 << 20
    sent: list[httpx.Request] = []
    collector = StatsCollector(
        fake_agent.app.state.service,  # type: ignore[attr-defined]
        keypair_from_mnemonic(new_mnemonic()),
        backend_url="http://backend.test",
        interval=10,
        http=httpx.Client(
            transport=httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(202))
        ),
    )
    envelope = collector.send_once()
    (vm,) = envelope.payload["vmStats"]
    assert vm["vmId"] == made["vmId"] and vm["diskUsedBytes"] == 7 << 20
    assert len(sent) == 1
