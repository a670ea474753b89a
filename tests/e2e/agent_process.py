"""`kumulus agent run` as a subprocess, the way a provider runs it (tests and bench)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AgentProcess:
    """`kumulus agent run` in a subprocess, as a provider would run it."""

    def __init__(self, state_dir: Path, port_range: tuple[int, int], **env: str) -> None:
        self.state_dir = state_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = state_dir / "agent.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("KUMULUS_")},
            "KUMULUS_AGENT_STATE_DIR": str(state_dir),
            "KUMULUS_AGENT_HOST": "127.0.0.1",
            "KUMULUS_AGENT_PORT": str(self.port),
            "KUMULUS_AGENT_SSH_BIND": "127.0.0.1",
            "KUMULUS_AGENT_SSH_PORT_MIN": str(port_range[0]),
            "KUMULUS_AGENT_SSH_PORT_MAX": str(port_range[1]),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""

    def start(self) -> AgentProcess:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kumulus.cli", "agent", "run"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"agent did not start: {self.log_path.read_text()[-2000:]}")
        self.token = (self.state_dir / "admin-token").read_text().strip()
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, timeout=120, headers={"Authorization": f"Bearer {self.token}"}
        )


class BackendProcess:
    """`kumulus backend run` in a subprocess (SQLite under `data_dir` unless a URL is given)."""

    def __init__(self, data_dir: Path, database_url: str | None = None, **env: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "backend.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("KUMULUS_")},
            "KUMULUS_BACKEND_DATA_DIR": str(data_dir),
            "KUMULUS_BACKEND_HOST": "127.0.0.1",
            "KUMULUS_BACKEND_PORT": str(self.port),
            **({"KUMULUS_DATABASE_URL": database_url} if database_url else {}),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> BackendProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kumulus.cli", "backend", "run"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"backend exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"backend did not start: {self.log_path.read_text()[-2000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
