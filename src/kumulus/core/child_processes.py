"""Child processes that do not outlive their supervisor, and a pidfile to sweep the ones
that did (a supervisor killed with SIGKILL runs no cleanup; its children would keep their
ports, and the next start would fail on them).

Linux only: `die_with_parent` uses prctl(PR_SET_PDEATHSIG); a process is recognised as the
one recorded by its pid, its start time (field 22 of /proc/PID/stat, in clock ticks since
boot) and its command line, so a recycled pid is never signalled."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> None:
    """For `preexec_fn`: the child gets `sig` when the thread that forked it exits (for a
    supervisor that spawns from its main thread: when the supervisor dies, even by
    SIGKILL). A parent already gone before prctl took effect is caught by comparing the
    parent pid: the child then signals itself."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), sig)


@dataclass(frozen=True)
class ProcessRecord:
    """A process as recorded in a pidfile: enough to recognise it later."""

    pid: int
    start_time: int
    cmdline: list[str]
    role: str = "child"  # "supervisor" or "child"


_PF_KTHREAD = 0x00200000  # in the flags of /proc/PID/stat (field 9)
_EXEC_SETTLE = 2.0  # seconds to wait for a process caught mid-exec to show its arguments


def _read(pid: int) -> tuple[str, bytes]:
    return Path(f"/proc/{pid}/stat").read_text(), Path(f"/proc/{pid}/cmdline").read_bytes()


def describe(pid: int, role: str = "child") -> ProcessRecord | None:
    """The record of the live process `pid`, or None when there is none (or it is a zombie
    that already exited, or a kernel thread: never a process recorded here).

    A process read just after `Popen` returned may be inside execve: its close-on-exec
    pipe (which `Popen` waits on) is closed before the new program's arguments are mapped,
    so /proc shows an empty command line for a moment. Such a record would never match the
    running process again, and a sweep would leave it alive; so an empty command line is
    read again for up to `_EXEC_SETTLE` seconds (the processes recorded here are never
    kernel threads, whose command line stays empty)."""
    deadline = time.monotonic() + _EXEC_SETTLE
    while True:
        try:
            stat, raw = _read(pid)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return None
        # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z" or int(fields[6]) & _PF_KTHREAD:
            return None  # exited, or a kernel thread that got the pid: not ours
        if raw.strip(b"\0") or time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    cmdline = [part.decode(errors="replace") for part in raw.rstrip(b"\0").split(b"\0")]
    return ProcessRecord(pid, int(fields[19]), cmdline, role)


def is_alive(record: ProcessRecord) -> bool:
    """Whether the very process `record` describes still runs (not a recycled pid)."""
    now = describe(record.pid)
    return now is not None and (now.start_time, now.cmdline) == (
        record.start_time,
        record.cmdline,
    )


def write(path: Path, records: list[ProcessRecord]) -> None:
    """Replace the pidfile at `path` with `records` (atomically: a crash mid-write leaves
    the previous file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([asdict(r) for r in records]))
    tmp.replace(path)


def read(path: Path) -> list[ProcessRecord]:
    """The records of the pidfile at `path` (none when it is missing or unreadable)."""
    try:
        data = json.loads(path.read_text())
        return [ProcessRecord(**item) for item in data]
    except (OSError, ValueError, TypeError):
        return []


def sweep(records: list[ProcessRecord], grace: float = 10.0) -> list[ProcessRecord]:
    """Stop every recorded process that is still the one recorded: SIGTERM, then SIGKILL
    after `grace` seconds. Returns the ones it signalled."""
    live = [r for r in records if is_alive(r)]
    for record in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(is_alive(r) for r in live):
        time.sleep(0.1)
    for record in live:
        if is_alive(record):
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signal.SIGKILL)
    return live
