"""Which host cores each VM is pinned to.

`nproc` (and every runtime that sizes a thread pool from `sched_getaffinity`) reads the CPU
affinity, not the cgroup's quota: an unpinned 1-vCPU VM on a 16-core host says 16. So each
VM gets a cpuset of ceil(cpu) cores, the least used ones, which spreads VMs across the host.
The quota (`nano_cpus`) still caps what the VM uses; the cpuset only says where.

The engine keeps each VM's cpuset (HostConfig.CpusetCpus), so it survives agent restarts:
the allocator reads the cpusets of the VMs it has not seen yet from the engine, and holds
nothing the engine does not.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence

from kumulus.agent.runtime import VMInfo, VMNotFoundError


def host_cores() -> tuple[int, ...]:
    """The cores this process may run on: the ones VMs can be pinned to."""
    return tuple(sorted(os.sched_getaffinity(0)))


def cores_for(cpu: float, available: int) -> int:
    """ceil(cpu) cores, at least one, at most what the host has."""
    return max(1, min(available, math.ceil(round(cpu, 6))))


class CpusetAllocator:
    """Chooses the cores of new VMs. Not thread-safe: the agent calls it under its create
    lock, with the engine's current list of VMs.

    `read(vm_id)` returns the cores a VM is pinned to as the engine says (None: unpinned,
    which counts as spread over every core); it is called once per VM this allocator has
    not seen, so after an agent restart the first placement re-reads them all.
    """

    def __init__(self, cores: Iterable[int], read: Callable[[str], frozenset[int] | None]) -> None:
        self.cores = tuple(sorted(set(cores)))
        if not self.cores:
            raise ValueError("no cores to place VMs on")
        self._read = read
        self._known: dict[str, frozenset[int]] = {}

    def _sync(self, vms: Sequence[VMInfo]) -> None:
        live = {vm.spec.vm_id for vm in vms}
        for vm_id in [v for v in self._known if v not in live]:
            del self._known[vm_id]
        for vm in vms:
            vm_id = vm.spec.vm_id
            if vm_id in self._known:
                continue
            try:
                cores = vm.spec.cpuset or self._read(vm_id)
            except VMNotFoundError:
                continue  # deleted meanwhile
            self._known[vm_id] = cores or frozenset(self.cores)

    def load(self, vms: Sequence[VMInfo]) -> dict[int, float]:
        """vCPUs reserved on each core: a VM's cpu shared evenly over its cores. Stopped VMs
        count too (they keep their reservation and their cores)."""
        self._sync(vms)
        load = dict.fromkeys(self.cores, 0.0)
        for vm in vms:
            cores = [c for c in self._known.get(vm.spec.vm_id, ()) if c in load]
            for core in cores:
                load[core] += vm.spec.cpu / len(cores)
        return load

    def choose(self, cpu: float, vms: Sequence[VMInfo]) -> frozenset[int]:
        """The ceil(cpu) least loaded cores (ties: the lower core number)."""
        load = self.load(vms)
        ranked = sorted(self.cores, key=lambda core: (round(load[core], 6), core))
        return frozenset(ranked[: cores_for(cpu, len(self.cores))])

    def remember(self, vm_id: str, cores: frozenset[int]) -> None:
        """A VM was created on `cores` (saves reading it back)."""
        self._known[vm_id] = cores
