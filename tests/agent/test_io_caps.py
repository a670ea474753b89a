"""Disk I/O caps: proportional to a VM's cpu and disk (with a floor), applied on the block
device under Docker's data root where the engine's cgroups can throttle it, and reported as
missing (never silently dropped) where they cannot."""

from pathlib import Path

from kumulus.agent.firewall import FirewallState
from kumulus.agent.io_limits import MIB, IoSupport, caps_for, probe
from kumulus.agent.service import VMService
from kumulus.config import AgentSettings
from kumulus.core.schemas import VMCreate
from tests.fakes import FakeRuntime

GIB = 1 << 30


def test_caps_follow_the_documented_formula(agent_settings: AgentSettings) -> None:
    one = caps_for(agent_settings, 1, 10 * GIB)
    assert (one.bps, one.iops) == (70 * MIB, 700)  # 50 MiB/s + 10 x 2 MiB/s; 500 + 10 x 20
    four = caps_for(agent_settings, 4, 100 * GIB)
    assert (four.bps, four.iops) == (400 * MIB, 4000)
    tiny = caps_for(agent_settings, 0.05, 1 * GIB)
    assert (tiny.bps, tiny.iops) == (20 * MIB, 200)  # the floor


def _mountinfo(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "mountinfo"
    path.write_text(
        "22 1 254:0 / / rw - ext4 /dev/vda rw\n"
        f"80 22 0:40 / /var/lib/kumulus/docker rw - btrfs {source} rw\n"
    )
    return path


def test_the_device_under_the_data_root_is_capped(
    agent_settings: AgentSettings, tmp_path: Path
) -> None:
    cgroup = tmp_path / "cgroup"
    (cgroup / "blkio").mkdir(parents=True)
    (cgroup / "blkio" / "blkio.throttle.read_bps_device").write_text("")
    # /dev/null stands in for the loop device: a path that exists; only block devices count.
    info = _mountinfo(tmp_path, "/dev/null")
    found = probe(agent_settings, "/var/lib/kumulus/docker/100000.100000", "1", info, cgroup)
    assert found.device is None and "no block device" in found.detail
    dev = next(str(p) for p in sorted(Path("/dev").iterdir()) if p.is_block_device())
    info = _mountinfo(tmp_path, dev)
    found = probe(agent_settings, "/var/lib/kumulus/docker/100000.100000", "1", info, cgroup)
    assert found.device == dev and "direct writes" in found.detail
    # cgroup v2 without the io controller: said, not silently dropped.
    (cgroup / "cgroup.controllers").write_text("cpuset cpu memory pids\n")
    found = probe(agent_settings, "/var/lib/kumulus/docker", "2", info, cgroup)
    assert found.device is None and "io controller is not enabled" in found.detail


def test_a_new_vm_carries_its_caps(
    agent_settings: AgentSettings, ssh_keypair: tuple[Path, str]
) -> None:
    key = ssh_keypair[1]
    runtime = FakeRuntime()
    service = VMService(runtime, agent_settings, firewall=FirewallState(True, "fake"))
    service.io = IoSupport("/dev/loop7", "capped")
    assert service.create(VMCreate(username="dev", ssh_key=key, cpu=2, memory="1g", disk="10g"))
    spec = next(iter(runtime.vms.values())).spec  # what the engine was asked to create
    assert (spec.io_device, spec.io_bps, spec.io_iops) == ("/dev/loop7", 120 * MIB, 1200)
