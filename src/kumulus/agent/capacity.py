"""What this host offers to Kumulus, and what its VMs have reserved."""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

from kumulus.agent.runtime import VMInfo
from kumulus.config import AgentSettings
from kumulus.core.sizes import format_size, parse_size


@dataclass(frozen=True)
class Resources:
    cpu: float
    memory: int
    disk: int

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.cpu - other.cpu, self.memory - other.memory, self.disk - other.disk)


def measure_capacity(settings: AgentSettings, docker_root: str | None) -> Resources:
    """Configured values win; otherwise the host's cores, memory less a reserve, and the
    size of the filesystem holding Docker's data (less 10% for images and the engine)."""
    cpu = settings.cpu_capacity or float(os.cpu_count() or 1)
    if settings.memory_capacity:
        memory = parse_size(settings.memory_capacity)
    else:
        memory = max(0, psutil.virtual_memory().total - parse_size(settings.memory_reserve))
    if settings.disk_capacity:
        disk = parse_size(settings.disk_capacity)
    else:
        path = docker_root if docker_root and os.path.exists(docker_root) else "/"
        disk = int(psutil.disk_usage(path).total * 0.9)
    return Resources(cpu=cpu, memory=memory, disk=disk)


def reserved_by(vms: list[VMInfo]) -> Resources:
    """Every VM, running or stopped, keeps its reservation: it may start again at any time."""
    return Resources(
        cpu=round(sum(vm.spec.cpu for vm in vms), 6),
        memory=sum(vm.spec.memory for vm in vms),
        disk=sum(vm.spec.disk or 0 for vm in vms),
    )


def shortfall(want: Resources, free: Resources) -> str | None:
    """A sentence naming what does not fit, or None when everything fits."""
    problems = []
    if want.cpu > free.cpu + 1e-9:
        problems.append(f"{want.cpu:g} vCPU asked, {max(free.cpu, 0):g} free")
    if want.memory > free.memory:
        problems.append(
            f"{format_size(want.memory)} memory asked, {format_size(max(free.memory, 0))} free"
        )
    if want.disk > free.disk:
        problems.append(
            f"{format_size(want.disk)} disk asked, {format_size(max(free.disk, 0))} free"
        )
    return "; ".join(problems) or None
