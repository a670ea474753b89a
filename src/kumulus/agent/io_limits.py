"""Disk I/O caps per VM: one VM must not starve the others' disks.

The formula (reads and writes capped separately, each):

    bytes/s = io_bps_per_cpu  x vCPU + io_bps_per_disk_gib  x disk GiB   (at least 20 MiB/s)
    IOPS    = io_iops_per_cpu x vCPU + io_iops_per_disk_gib x disk GiB   (at least 200)

With the defaults (50 MiB/s and 500 IOPS per vCPU, 2 MiB/s and 20 IOPS per GiB) a
1 vCPU / 10 GiB VM gets 70 MiB/s and 700 IOPS; a 4 vCPU / 100 GiB one 400 MiB/s and 4,000.

Docker applies the caps as blkio device limits on the block device that holds its data root
(for the btrfs loop file, the loop device). The kernel enforces them through cgroup v2's
`io.max`, or cgroup v1's `blkio.throttle.*`; under v1, writes through the page cache are
written back by the kernel's flusher threads and are not charged to the VM, so only reads
and direct writes are capped there (measured: `dd oflag=direct` at the cap, buffered `dd`
at full speed). Where neither is available Docker drops such limits silently, so the agent
probes first and says in its isolation report what it can cap.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from kumulus.config import AgentSettings
from kumulus.core.sizes import parse_size

MIB = 1 << 20
GIB = 1 << 30
MIN_BPS = 20 * MIB
MIN_IOPS = 200


@dataclass(frozen=True)
class IoCaps:
    bps: int  # bytes per second, for reads and for writes
    iops: int  # operations per second, for reads and for writes


def caps_for(settings: AgentSettings, cpu: float, disk: int | None) -> IoCaps:
    """The module docstring's formula for a VM of `cpu` vCPUs and `disk` bytes."""
    disk_gib = (disk or 0) / GIB
    bps = (
        parse_size(settings.io_bps_per_cpu) * cpu
        + parse_size(settings.io_bps_per_disk_gib) * disk_gib
    )
    iops = settings.io_iops_per_cpu * cpu + settings.io_iops_per_disk_gib * disk_gib
    return IoCaps(bps=max(MIN_BPS, math.ceil(bps)), iops=max(MIN_IOPS, math.ceil(iops)))


@dataclass(frozen=True)
class IoSupport:
    """Whether VM disk I/O can be capped here: `device` is the block device to cap (None:
    it cannot), `detail` one sentence for the isolation report."""

    device: str | None
    detail: str


def backing_device(path: str, mountinfo: Path = Path("/proc/self/mountinfo")) -> str | None:
    """The block device mounted at the deepest mount point holding `path` (a btrfs loop
    file's loop device, say), or None when that is no block device (overlay, tmpfs, ...)."""
    target = os.path.realpath(path)
    best: tuple[int, str] | None = None
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 2:
            continue
        point = fields[4].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= best[0]):
            best = (len(point), tail[1])
    if best is None:
        return None
    try:
        return best[1] if stat.S_ISBLK(os.stat(best[1]).st_mode) else None
    except OSError:
        return None


def throttle_supported(cgroup_version: str, cgroup_root: Path = Path("/sys/fs/cgroup")) -> str:
    """Empty when the engine's cgroups can throttle a device, else why not."""
    if cgroup_version == "2":
        try:
            controllers = (cgroup_root / "cgroup.controllers").read_text().split()
        except OSError:
            return "cgroup v2 without a readable cgroup.controllers"
        return "" if "io" in controllers else "the cgroup v2 io controller is not enabled"
    if (cgroup_root / "blkio" / "blkio.throttle.read_bps_device").exists():
        return ""
    return "the cgroup v1 blkio throttle is not available"


def probe(
    settings: AgentSettings,
    root_dir: str,
    cgroup_version: str,
    mountinfo: Path = Path("/proc/self/mountinfo"),
    cgroup_root: Path = Path("/sys/fs/cgroup"),
) -> IoSupport:
    if not settings.io_limits:
        return IoSupport(None, "disk I/O is not capped (KUMULUS_AGENT_IO_LIMITS=false)")
    device = backing_device(root_dir, mountinfo) if root_dir else None
    if device is None:
        return IoSupport(
            None, f"disk I/O is not capped: Docker's data root {root_dir!r} is on no block device"
        )
    problem = throttle_supported(cgroup_version, cgroup_root)
    if problem:
        return IoSupport(None, f"disk I/O is not capped: {problem}")
    scope = (
        "reads and writes"
        if cgroup_version == "2"
        else "reads and direct writes (cgroup v1 does not charge page-cache writeback to VMs)"
    )
    return IoSupport(device, f"disk I/O capped per VM on {device}: {scope}")
