"""A child read while still inside execve (empty command line in /proc) is recorded with
its program's command line, so the next start recognises it and sweeps it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from kumulus.core import child_processes


def test_an_empty_command_line_is_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        real = child_processes._read
        calls = {"n": 0}

        def mid_exec(pid: int) -> tuple[str, bytes]:
            stat, raw = real(pid)
            calls["n"] += 1
            return (stat, b"") if calls["n"] <= 3 else (stat, raw)

        monkeypatch.setattr(child_processes, "_read", mid_exec)
        record = child_processes.describe(sleeper.pid)
        assert record is not None
        assert record.cmdline[0] == sys.executable and calls["n"] == 4
        monkeypatch.undo()
        assert child_processes.is_alive(record)
    finally:
        sleeper.kill()


def test_a_kernel_thread_is_no_process_of_ours() -> None:
    # pid 2 is kthreadd where kernel threads are visible (its command line stays empty:
    # without the flag test, each look at it waited for the command line to appear).
    if not Path("/proc/2/stat").exists() or "(kthreadd)" not in Path("/proc/2/stat").read_text():
        pytest.skip("no kernel threads visible here")
    started = time.monotonic()
    assert child_processes.describe(2) is None
    assert time.monotonic() - started < 0.5
