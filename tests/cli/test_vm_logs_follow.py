"""`kumulus vm logs ID --follow` prints what the VM writes after it started following, once
each line (it sends the API's `until` marker back as `since`), until interrupted."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time

from tests.cli.conftest import Cli
from tests.fuzz_platform import Platform


def _read_until(proc: subprocess.Popen[str], text: str, seconds: float) -> str:
    assert proc.stdout is not None
    seen, deadline = "", time.monotonic() + seconds
    while text not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {text!r} within {seconds} s; printed: {seen!r}"
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            line = proc.stdout.readline()
            assert line, f"the command ended; printed: {seen!r}"
            seen += line
    return seen


def test_follow_prints_new_lines_once(developer: Cli, live: Platform) -> None:
    before = set(live.runtime.vms)
    out = developer("vm", "create", "--username", "dev", "--memory", "512m", "--json")
    assert out.returncode == 0, out.stderr
    vm = json.loads(out.stdout)
    (agent_vm,) = set(live.runtime.vms) - before
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(developer.home),
        "KUMULUS_BACKEND": developer.backend,
        "KUMULUS_TOKEN": developer.token,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "kumulus.cli", "vm", "logs", vm["id"], "--follow"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        printed = _read_until(proc, "sshd started", 30)
        live.runtime.say(agent_vm, "first line after following")
        printed += _read_until(proc, "first line after following", 15)
        live.runtime.say(agent_vm, "second line")
        printed += _read_until(proc, "second line", 15)
        time.sleep(2.5)  # two more polls: nothing may come again
        # One Ctrl-C is enough, even when Python drops its interrupt in a finaliser
        # (test_a_ctrl_c_dropped_by_a_finaliser_still_ends_a_wait.py).
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, rest
    finally:
        if proc.poll() is None:
            proc.kill()
    printed += rest
    assert printed.count("sshd started") == 1, printed
    assert printed.count("first line after following") == 1, printed
    assert printed.count("second line") == 1, printed
    assert printed.index("first line after following") < printed.index("second line")
    developer("vm", "rm", vm["id"])
