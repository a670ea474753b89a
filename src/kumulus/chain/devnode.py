"""A local development chain: chopsticks (the Polkadot ecosystem's local-testing node) run
from a raw chain spec, fully offline. For `kumulus up --chain-spec` and the tests; never for
real value (one node, unauthenticated dev RPCs: loopback only)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx

from kumulus.core import child_processes

DEFAULT_INSTALL = Path("/var/lib/kumulus/chopsticks")


class DevNodeError(Exception):
    pass


def chopsticks_binary() -> Path:
    """$KUMULUS_CHOPSTICKS, the copy `scripts/setup.sh` installs, or one on PATH."""
    candidates = [
        os.environ.get("KUMULUS_CHOPSTICKS"),
        str(DEFAULT_INSTALL / "node_modules" / ".bin" / "chopsticks"),
        shutil.which("chopsticks"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return Path(candidate)
    raise DevNodeError(
        "chopsticks is not installed: npm install --prefix /var/lib/kumulus/chopsticks "
        "@acala-network/chopsticks@1.5.1 (scripts/setup.sh does it)"
    )


class DevNode:
    """chopsticks serving `spec` on 127.0.0.1:`port` (HTTP and WebSocket JSON-RPC)."""

    def __init__(self, spec: Path, port: int, log: Path) -> None:
        if not spec.is_file():
            raise DevNodeError(f"no chain spec at {spec}")
        self.spec, self.port, self.log = spec, port, log
        self.url = f"ws://127.0.0.1:{port}"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def start(self, timeout: float = 90, die_with_parent: bool = False) -> DevNode:
        """Start chopsticks and wait until it answers; with `die_with_parent`, it gets
        SIGTERM when the calling thread's process dies (a supervisor killed by SIGKILL)."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        me = os.getpid()
        with self.log.open("ab") as out:
            self._proc = subprocess.Popen(
                [
                    str(chopsticks_binary()),
                    *("--genesis", str(self.spec), "--host", "127.0.0.1"),
                    *("--port", str(self.port), "--build-block-mode", "Instant"),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=(
                    (lambda: child_processes.die_with_parent(me)) if die_with_parent else None
                ),
            )
        deadline = time.monotonic() + timeout
        body = {"id": 1, "jsonrpc": "2.0", "method": "chain_getFinalizedHead", "params": []}
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise DevNodeError(f"chopsticks exited; see {self.log}")
            try:
                resp = httpx.post(f"http://127.0.0.1:{self.port}", json=body, timeout=2)
                if resp.status_code == 200 and "result" in resp.json():
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise DevNodeError(f"chopsticks did not answer within {timeout:.0f} s; see {self.log}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
