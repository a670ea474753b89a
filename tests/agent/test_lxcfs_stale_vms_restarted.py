"""Which VMs the `lxcfs` job restarts: running ones bound to this lxcfs whose mounts are from
a gone FUSE connection, and only while lxcfs is up again. Mount tables are parsed, not
read through FUSE."""

from __future__ import annotations

from pathlib import Path

import pytest

from kumulus.agent import lxcfs as lxcfs_module
from kumulus.agent.lxcfs import Lxcfs, LxcfsStatus, StaleMountRepair, parse_mountinfo
from kumulus.agent.runtime import VMInfo, VMSpec
from tests.fakes import FakeRuntime

MOUNTINFO = """\
22 1 0:21 / /proc rw,nosuid - proc proc rw
48 27 0:47 / /var/lib/lxc\\040fs rw,nosuid,nodev shared:1 - fuse.lxcfs lxcfs rw,allow_other
122 106 0:47 /proc/meminfo /proc/meminfo ro,nosuid - fuse.lxcfs lxcfs rw,allow_other
"""


def test_mountinfo_is_parsed_with_escaped_mount_points() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    assert [(m.device, m.mount_point, m.fstype) for m in mounts] == [
        ("0:21", "/proc", "proc"),
        ("0:47", "/var/lib/lxc fs", "fuse.lxcfs"),
        ("0:47", "/proc/meminfo", "fuse.lxcfs"),
    ]


def test_a_directory_that_is_not_an_lxcfs_mount_is_inactive(tmp_path: Path) -> None:
    status = Lxcfs(tmp_path).probe()
    assert not status.active and "not mounted" in status.detail


def _vm(vm_id: str, lxcfs_dir: str | None, pid: int) -> VMInfo:
    spec = VMSpec(
        vm_id=vm_id,
        username="dev",
        ssh_key="",
        cpu=1,
        memory=1 << 30,
        disk=None,
        ssh_bind="127.0.0.1",
        ssh_port=2200,
        created_at=0.0,
        lxcfs_dir=lxcfs_dir,
    )
    return VMInfo(spec=spec, state="running", pid=pid)


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[FakeRuntime, Lxcfs, dict]:
    """A fake engine and an lxcfs whose probe and per-process mount devices the test sets."""
    runtime = FakeRuntime()
    lxcfs = Lxcfs(tmp_path / "lxcfs")
    root = str(lxcfs.root)
    for vm in [
        _vm("stale", root, 101),
        _vm("fresh", root, 102),
        _vm("plain", None, 103),  # created without lxcfs
        _vm("other", "/elsewhere", 104),  # bound to another lxcfs
    ]:
        runtime.vms[vm.spec.vm_id] = vm
    stopped = _vm("stopped", root, 105)
    runtime.vms["stopped"] = VMInfo(spec=stopped.spec, state="exited")
    world: dict = {"status": LxcfsStatus(True, "up", device="0:59"), "devices": {}}
    world["devices"] = {101: "0:47", 102: "0:59", 103: None, 104: "0:12", 105: "0:47"}
    monkeypatch.setattr(Lxcfs, "probe", lambda self: world["status"])

    def mounts(pid: int | str) -> list[lxcfs_module.Mount]:
        device = world["devices"][pid]
        return [] if device is None else [lxcfs_module.Mount(device, "/proc/meminfo", "fuse.lxcfs")]

    monkeypatch.setattr(lxcfs_module, "_read_mountinfo", mounts)
    return runtime, lxcfs, world


def test_only_running_vms_with_mounts_of_a_gone_lxcfs_are_restarted(host) -> None:  # type: ignore[no-untyped-def]
    runtime, lxcfs, world = host
    repair = StaleMountRepair(runtime, lxcfs)
    assert repair.run() == ["stale"]
    assert runtime.restarts == ["stale"]
    # The same live mount: nothing can have gone stale, nothing is inspected again.
    world["devices"][102] = "0:47"
    assert repair.run() == []
    # lxcfs restarted once more (new device): every VM on the old one is restarted.
    world["status"] = LxcfsStatus(True, "up", device="0:60")
    world["devices"][101] = "0:59"
    assert repair.run() == ["stale", "fresh"]


def test_nothing_is_restarted_while_lxcfs_is_down(host) -> None:  # type: ignore[no-untyped-def]
    runtime, lxcfs, world = host
    world["status"] = LxcfsStatus(False, "not mounted")
    assert StaleMountRepair(runtime, lxcfs).run() == []
    assert runtime.restarts == []
