"""Stopping and starting the shared Docker engine, for the `disruptive` tests that do.

A dockerd one of these tests started is a child of the test process: once stopped it
stays a zombie (its /proc entry remains) until reaped here, which once made the engine
restart test, run after the chaos test, wait out its minute and fail. Another's dockerd
is waited for until its parent reaped it: a new one would refuse its pidfile."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import docker


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


def stop_dockerd(sig: signal.Signals, timeout: float = 60) -> list[bytes]:
    """Send `sig` to dockerd and wait until it has exited; returns its command line, to
    start it again."""
    pid = int(
        subprocess.run(
            ["pidof", "dockerd"], capture_output=True, text=True, check=True
        ).stdout.split()[0]
    )
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(pid), f"dockerd did not stop within {timeout:.0f} s"
    return argv


def start_dockerd(argv: list[bytes], timeout: float = 90) -> None:
    """Start dockerd again from its command line and wait until it answers."""
    log_path = Path("/var/log/kumulus/dockerd.log")
    out = log_path.open("ab") if log_path.parent.exists() else subprocess.DEVNULL
    subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            docker.from_env().ping()
            return
        except Exception:
            time.sleep(0.5)
    raise AssertionError("dockerd did not come back")
