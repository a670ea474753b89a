"""What the agent needs from a container engine, stated once so higher layers can use a fake."""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Protocol

from kumulus.agent.firewall import FirewallState
from kumulus.core.log_times import LogChunk

VM_ID_LENGTH = 16  # lowercase hex


@dataclass(frozen=True)
class VMSpec:
    """Everything needed to (re)create a VM; stored on the container itself as labels/env."""

    vm_id: str
    username: str
    ssh_key: str  # normalised authorized_keys line
    cpu: float
    memory: int  # bytes
    disk: int | None  # bytes; None only where the engine cannot enforce a disk size
    ssh_bind: str
    ssh_port: int
    created_at: float
    idempotency_key: str | None = None
    # Host cores the VM may run on (so `nproc`, which reads the CPU affinity, tells its
    # size); None: any core. Read back from the engine by `inspect`, not by `list`.
    cpuset: frozenset[int] | None = None
    # Where the host's lxcfs is mounted when the VM's /proc and /sys/devices/system/cpu
    # files come from it (the VM then sees its own cpu and memory); None: the host's files.
    # Read back by `inspect`, not by `list`.
    lxcfs_dir: str | None = None
    lxcfs_files: tuple[str, ...] = ()  # paths under lxcfs_dir bound at the same path in the VM
    # The public half of the VM's SSH host key ("ssh-ed25519 <base64>"), which its sshd
    # serves; None for VMs made before the agent chose host keys.
    host_key: str | None = None
    # Disk I/O caps (agent/io_limits.py) on `io_device`, for reads and writes each; None:
    # not capped. Read back by `inspect`, not by `list`.
    io_device: str | None = None
    io_bps: int = 0
    io_iops: int = 0


@dataclass(frozen=True)
class VMInfo:
    """A VM as the engine sees it now. `state` is Docker's: created, running, paused,
    restarting, removing, exited or dead."""

    spec: VMSpec
    state: str
    exit_code: int | None = None
    started_at: str | None = None
    ip_address: str | None = None
    container_id: str | None = None
    pid: int | None = None  # the VM's first process on the host, while running (`inspect` only)


@dataclass(frozen=True)
class VMUsage:
    cpu_seconds: float  # cumulative CPU time used
    memory_bytes: int
    memory_limit: int


@dataclass(frozen=True)
class EngineInfo:
    version: str
    storage_driver: str
    root_dir: str
    userns_remap: bool
    ncpu: int
    mem_total: int
    cgroup_version: str = "1"  # the engine's: "1" or "2"


class EngineError(Exception):
    """The engine refused or failed an operation. `retryable` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class VMNotFoundError(EngineError):
    """No Kumulus VM with that id (containers without our label are never visible)."""


class PortInUseError(EngineError):
    """The SSH port was taken by something outside Kumulus between choosing and binding it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class VMRuntime(Protocol):
    """A container engine seen through Kumulus' eyes.

    Only containers created by this runtime (labelled as Kumulus VMs) are listed or touched.
    All methods are blocking and thread-safe; none interprets user text as code.
    """

    def create(self, spec: VMSpec, image: str, pids_limit: int) -> VMInfo:
        """Create (not start) the VM with its own network; clean up fully on failure."""

    def install_host_key(self, vm_id: str, private_key: bytes) -> None:
        """Write `private_key` (OpenSSH PEM, the private half of the VM's `spec.host_key`)
        into the created VM's own filesystem as its sshd host key, root-only. Call before
        the first start: the VM refuses to start sshd without it. Kept nowhere else."""

    def start(self, vm_id: str) -> VMInfo:
        """Start a created or stopped VM. Raise PortInUseError if its SSH port is taken."""

    def stop(self, vm_id: str, timeout: int = 10) -> VMInfo:
        """Stop the VM, keeping its files. Idempotent."""

    def restart(self, vm_id: str, timeout: int = 10) -> VMInfo:
        """Stop and start the VM again, keeping its files; its mounts are made anew."""

    def destroy(self, vm_id: str) -> None:
        """Remove the VM, its writable layer (all its files) and its network. Idempotent."""

    def inspect(self, vm_id: str) -> VMInfo:
        """Current state; raise VMNotFoundError for unknown ids."""

    def list(self) -> list[VMInfo]:
        """All Kumulus VMs on this engine, running or not (the agent's state after a restart)."""

    def logs(self, vm_id: str, tail: int) -> str:
        """The last `tail` lines of the VM's console output."""

    def logs_since(self, vm_id: str, tail: int, since: str | None) -> LogChunk:
        """The last `tail` lines of the VM's console output written after the marker
        `since` (core/log_times.py; None: from the start), and the marker of the last."""

    def usage(self, vm_id: str) -> VMUsage:
        """Cumulative CPU time and current memory of a running VM."""

    def engine(self) -> EngineInfo:
        """Facts about the engine; raise EngineError when it does not answer."""

    def isolate_networks(self, allow_smtp: bool) -> FirewallState:
        """Install (idempotently) the host's rules that keep every VM's network away from
        the host, private networks and, unless `allow_smtp`, SMTP ports, in IPv4 and IPv6;
        say whether they are in force (never raises: a failure is an inactive state)."""

    def supports_disk_limit(self, image: str) -> bool:
        """True when the engine enforces a per-VM disk size (probed, not guessed)."""

    def has_image(self, image: str) -> bool:
        """True when the VM base image is present."""

    def recover(self) -> builtins.list[str]:
        """At agent start: remove leftovers of creates a crash interrupted; say what."""
