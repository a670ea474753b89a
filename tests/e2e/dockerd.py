"""Stopping and starting the shared Docker engine, for the `disruptive` tests that do.

A dockerd one of these tests started is a child of the test process: once stopped it
stays a zombie (its /proc entry remains) until reaped here, which once made the engine
restart test, run after the chaos test, wait out its minute and fail. Another's dockerd
is waited for until its parent reaped it: a new one would refuse its pidfile.

dockerd's own children go with it (its containerd has PR_SET_PDEATHSIG) but may take
seconds to die, busy in btrfs: a dockerd started meanwhile finds the old containerd's pid
alive, waits for a socket that never answers and exits ("timeout waiting for containerd
to start"; a CI run of the chaos test lost its engine that way). So stopping waits for
them too, and starting tries again when the new dockerd exits before it answers, as a
service manager restarting it would."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import docker

LOG = Path("/var/log/kumulus/dockerd.log")


def _gone(pid: int) -> bool:
    """The process has exited and been reaped: here if it was our child. A zombie of
    another parent is not gone yet: a new dockerd refuses to start while the pid in its
    pidfile still exists."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    except ChildProcessError:
        pass  # not our child: its parent (init) reaps it
    return not Path(f"/proc/{pid}").exists()


def _children(pid: int) -> list[int]:
    """The pids whose parent is `pid` (containerd, docker-proxy for dockerd)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name is in parentheses and may hold spaces: split after it.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _dockerd() -> int:
    """The running dockerd's pid (not a zombie awaiting its parent)."""
    found = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True).stdout.split()
    for pid in found:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # exited since pidof
        if state != "Z":
            return int(pid)
    raise AssertionError(f"no running dockerd (pidof: {found})")


def stop_dockerd(sig: signal.Signals, timeout: float = 60) -> list[bytes]:
    """Send `sig` to dockerd and wait until it and its children have exited; returns its
    command line, to start it again."""
    pid = _dockerd()
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    waited = [pid, *_children(pid)]
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while not all(_gone(p) for p in waited) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [p for p in waited if not _gone(p)]
    assert not left, f"dockerd (or its children {left}) did not stop within {timeout:.0f} s"
    return argv


def _log_tail(lines: int = 15) -> str:
    try:
        return "\n".join(LOG.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no dockerd log)"


def start_dockerd(argv: list[bytes], timeout: float = 90, attempts: int = 3) -> None:
    """Start dockerd again from its command line and wait until it answers; a dockerd
    that exits first is started again, up to `attempts` times in all."""
    deadline = time.monotonic() + timeout
    for _ in range(attempts):
        out = LOG.open("ab") if LOG.parent.exists() else subprocess.DEVNULL
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                docker.from_env().ping()
                return
            except Exception:
                time.sleep(0.5)
        if proc.poll() is None:
            break  # still starting at the deadline
        time.sleep(1)
    raise AssertionError(f"dockerd did not come back; its log ends:\n{_log_tail()}")
