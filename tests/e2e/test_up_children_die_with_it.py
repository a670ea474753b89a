"""`kumulus up` killed with SIGKILL takes its backend and agent with it (PR_SET_PDEATHSIG),
so their ports are free for the next `kumulus up` (it used to fail on them). The sweep of a
pidfile's leftovers is tested without Docker: tests/core/test_leftover_children_are_swept.py."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import docker
import pytest

from kumulus.core import child_processes
from tests.e2e.agent_process import free_port, remove_agent_vms

pytestmark = pytest.mark.slow


def _up(env: dict[str, str], out_path: Path) -> subprocess.Popen[bytes]:
    with out_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kumulus.cli", "up"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 120
    while "Kumulus is up." not in out_path.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, out_path.read_text()
        time.sleep(0.3)
    return proc


def test_sigkill_of_up_stops_its_children(
    docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KUMULUS_")},
        "KUMULUS_BACKEND_DATA_DIR": str(tmp_path / "backend"),
        "KUMULUS_BACKEND_PORT": str(free_port()),
        "KUMULUS_AGENT_STATE_DIR": str(tmp_path / "agent"),
        "KUMULUS_AGENT_PORT": str(free_port()),
        "KUMULUS_AGENT_SSH_BIND": "127.0.0.1",
        "KUMULUS_AGENT_SSH_PORT_MIN": "23640",
        "KUMULUS_AGENT_SSH_PORT_MAX": "23649",
        "KUMULUS_AGENT_STATS_INTERVAL": "1",
        "KUMULUS_BACKEND_HEARTBEAT_RATE_PER_HOST": "600/minute",
        "KUMULUS_LOG_DIR": str(tmp_path / "logs"),
    }
    pidfile = tmp_path / "backend" / "up.pids"
    first = _up(env, tmp_path / "up1.out")
    try:
        children = [r for r in child_processes.read(pidfile) if r.role == "child"]
        assert len(children) == 2 and all(child_processes.is_alive(r) for r in children)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        deadline = time.monotonic() + 30
        while any(child_processes.is_alive(r) for r in children):
            assert time.monotonic() < deadline, "a child of kumulus up outlived it"
            time.sleep(0.2)
        for name in ("KUMULUS_BACKEND_PORT", "KUMULUS_AGENT_PORT"):
            with socket.socket() as s:
                # As uvicorn binds: closed connections in TIME_WAIT do not count, a listener does.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", int(env[name])))
                s.listen()
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGINT)
            first.wait(timeout=60)
        for r in child_processes.read(pidfile):
            if child_processes.is_alive(r):
                os.kill(r.pid, signal.SIGKILL)
        remove_agent_vms(docker_client, tmp_path / "agent")
