"""A pidfile's leftovers are stopped on the next start, and only the very processes
recorded: a pid now used by another process is left alone."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer

from kumulus import up
from kumulus.core import child_processes


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def test_a_live_leftover_is_swept_on_start(tmp_path: Path) -> None:
    leftover = _sleeper()
    try:
        record = child_processes.describe(leftover.pid)
        assert record is not None
        pidfile = tmp_path / "up.pids"
        child_processes.write(pidfile, [record])
        up._sweep_leftovers(pidfile)
        assert leftover.wait(timeout=15) is not None
        assert not pidfile.exists()
    finally:
        leftover.kill()


def test_a_recycled_pid_is_not_signalled(tmp_path: Path) -> None:
    bystander = _sleeper()
    try:
        record = child_processes.describe(bystander.pid)
        assert record is not None
        # The same pid, started at another time: another process that got the pid.
        stale = child_processes.ProcessRecord(record.pid, record.start_time - 1, record.cmdline)
        other_cmd = child_processes.ProcessRecord(record.pid, record.start_time, ["kumulus"])
        assert child_processes.sweep([stale, other_cmd], grace=0.5) == []
        time.sleep(0.3)
        assert bystander.poll() is None
        assert child_processes.is_alive(record)
    finally:
        bystander.kill()


def test_a_running_supervisor_is_not_taken_over(tmp_path: Path) -> None:
    other_up = _sleeper()
    try:
        record = child_processes.describe(other_up.pid, "supervisor")
        assert record is not None
        pidfile = tmp_path / "up.pids"
        child_processes.write(pidfile, [record])
        with pytest.raises(typer.Exit):
            up._sweep_leftovers(pidfile)
        assert other_up.poll() is None and pidfile.exists()
    finally:
        other_up.kill()


def test_a_child_dies_with_its_parent_even_on_sigkill(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    code = (
        "import os, subprocess, sys, time\n"
        "from kumulus.core.child_processes import die_with_parent\n"
        "me = os.getpid()\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'],"
        " preexec_fn=lambda: die_with_parent(me))\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(120)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 15
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        child = child_processes.describe(int(pid_file.read_text()))
        assert child is not None
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while child_processes.is_alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not child_processes.is_alive(child)
    finally:
        parent.kill()
