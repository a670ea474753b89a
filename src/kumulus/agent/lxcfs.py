"""lxcfs, so that a VM sees its own cpu and memory in /proc and /sys/devices/system/cpu.

A container reads the host's /proc/meminfo, /proc/cpuinfo, ...: `free` in a 1 GiB VM says
24 GiB, and runtimes that size heaps and thread pools from it get OOM-killed. lxcfs is a FUSE
filesystem that answers those files for the cgroup of the process reading them; bound over
them, each VM sees its own limits. Two facts shape this module:

- lxcfs may be missing or down. VMs are then created without it (the host report and the
  log say so) rather than refused; a VM created with it needs it to start.
- A bind mount keeps the FUSE connection it was made from: after lxcfs restarts, a running
  VM's files answer ENOTCONN until the VM restarts and its mounts are made again. The agent's
  `lxcfs` job finds those VMs by comparing the device of their lxcfs mounts (from
  /proc/PID/mountinfo, no read through FUSE) with the live mount's, and restarts them.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from kumulus.agent.runtime import EngineError, VMNotFoundError, VMRuntime

log = logging.getLogger(__name__)

FSTYPE = "fuse.lxcfs"
# What lxcfs serves, bound at the same path inside the VM (as LXC does).
FILES = (
    "proc/cpuinfo",
    "proc/diskstats",
    "proc/loadavg",
    "proc/meminfo",
    "proc/stat",
    "proc/swaps",
    "proc/uptime",
    "sys/devices/system/cpu",
)


@dataclass(frozen=True)
class LxcfsStatus:
    active: bool
    detail: str  # for the host report and the log
    device: str | None = None  # "major:minor" of the live mount
    files: tuple[str, ...] = ()  # the FILES this lxcfs serves


@dataclass(frozen=True)
class Mount:
    device: str
    mount_point: str
    fstype: str


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts of a /proc/PID/mountinfo, in order (a later one stacks on an earlier)."""
    mounts = []
    for line in text.splitlines():
        head, sep, tail = line.partition(" - ")
        fields = head.split()
        if not sep or len(fields) < 5 or not tail:
            continue
        # Mount points escape space, tab, newline and backslash as octal.
        point = fields[4]
        for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
            point = point.replace(code, char)
        mounts.append(Mount(device=fields[2], mount_point=point, fstype=tail.split()[0]))
    return mounts


def _read_mountinfo(pid: int | str) -> list[Mount]:
    return parse_mountinfo(Path(f"/proc/{pid}/mountinfo").read_text())


class Lxcfs:
    """The host's lxcfs at `root` (its mount point), as the agent uses it. Thread-safe."""

    def __init__(self, root: Path, timeout: float = 2.0) -> None:
        # Never resolve `root` itself: on a dead FUSE mount even stat fails (ENOTCONN).
        self.root = Path(os.path.abspath(root))
        self.timeout = timeout
        self._lock = threading.Lock()
        self._stuck: threading.Thread | None = None
        self._was_active: bool | None = None

    def probe(self) -> LxcfsStatus:
        """Whether lxcfs is mounted at `root` and answers (a read with a deadline). A change
        since the last probe is logged."""
        status = self._probe()
        with self._lock:
            changed = self._was_active is not None and self._was_active != status.active
            self._was_active = status.active
        if changed and status.active:
            log.info("lxcfs is back: %s", status.detail)
        elif changed:
            log.warning("lxcfs is down: %s", status.detail)
        return status

    def _probe(self) -> LxcfsStatus:
        try:
            mounts = [m for m in _read_mountinfo("self") if m.mount_point == str(self.root)]
        except OSError as exc:
            return LxcfsStatus(False, f"cannot read this process' mounts: {exc}")
        if not mounts or mounts[-1].fstype != FSTYPE:
            return LxcfsStatus(
                False,
                f"lxcfs is not mounted at {self.root}: VMs see the host's cpu and memory "
                "(install and start lxcfs)",
            )
        answer = self._answer()
        if answer is not None:
            return LxcfsStatus(False, f"lxcfs at {self.root} does not answer: {answer}")
        files = tuple(f for f in FILES if os.path.exists(self.root / f))
        if "proc/meminfo" not in files:
            return LxcfsStatus(False, f"lxcfs at {self.root} serves no proc/meminfo")
        return LxcfsStatus(
            True,
            f"lxcfs at {self.root}: VMs see their own cpu and memory",
            device=mounts[-1].device,
            files=files,
        )

    def _answer(self) -> str | None:
        """None when /proc/meminfo reads back; else why not. A FUSE daemon that hangs would
        hang the reader forever, so the read runs on a thread with a deadline, and while one
        such read is still stuck no other is started."""
        with self._lock:
            if self._stuck is not None and self._stuck.is_alive():
                return "an earlier read is still waiting"
            outcome: list[str] = []

            def read() -> None:
                try:
                    with open(self.root / "proc" / "meminfo", "rb") as f:
                        head = f.read(64)
                    outcome.append("" if head.startswith(b"MemTotal:") else "unexpected content")
                except OSError as exc:
                    outcome.append(exc.strerror or str(exc))

            thread = threading.Thread(target=read, name="lxcfs-probe", daemon=True)
            thread.start()
            thread.join(self.timeout)
            if thread.is_alive():
                self._stuck = thread
                return f"no answer within {self.timeout:g} s"
            return outcome[0] or None


def stale_in(pid: int, device: str) -> bool:
    """True when the process' mount namespace holds lxcfs mounts of another FUSE connection
    than `device` (the live one): they answer ENOTCONN."""
    return any(m.fstype == FSTYPE and m.device != device for m in _read_mountinfo(pid))


class StaleMountRepair:
    """The `lxcfs` job: restart the running VMs whose lxcfs mounts are from an lxcfs that is
    gone (a restart keeps their files and makes their mounts again). Only while lxcfs is up:
    without it they would not start. Mounts go stale only when the live mount changes, so
    once a round found every VM on the current mount, later rounds with the same mount cost
    one probe and inspect nothing."""

    def __init__(self, runtime: VMRuntime, lxcfs: Lxcfs) -> None:
        self.runtime = runtime
        self.lxcfs = lxcfs
        self._clean_device: str | None = None  # every VM was on it at the last full round

    def run(self) -> list[str]:
        """One round; returns the ids of the VMs restarted."""
        status = self.lxcfs.probe()
        if not status.active or status.device is None or status.device == self._clean_device:
            return []
        restarted: list[str] = []
        failed = False
        for vm in self.runtime.list():
            # VMs bound to another lxcfs (the mount point was reconfigured) are not judged
            # against this one: they would be restarted on every round.
            if vm.state != "running" or vm.spec.lxcfs_dir != str(self.lxcfs.root):
                continue
            try:
                info = self.runtime.inspect(vm.spec.vm_id)
                if info.pid is None or not stale_in(info.pid, status.device):
                    continue
                log.warning(
                    "VM %s lost its lxcfs files (lxcfs restarted): restarting it", vm.spec.vm_id
                )
                self.runtime.restart(vm.spec.vm_id)
                restarted.append(vm.spec.vm_id)
            except (VMNotFoundError, FileNotFoundError, ProcessLookupError):
                continue  # deleted or stopped meanwhile
            except EngineError as exc:
                failed = True
                log.error("could not restart VM %s after an lxcfs restart: %s", vm.spec.vm_id, exc)
        if not failed:
            self._clean_device = status.device
        return restarted
