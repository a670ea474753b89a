"""ATTACK21 (an attacker review found it; fixed since): while the chain node does not
answer (a firewall that drops packets, a node stuck in its handshake), every anonymous
GET /readyz leaves a thread behind for up to 120 s per request before it, and they pile up.

Since e1c24f9 the ChainClient connects at its first call, under its lock, with the 120 s
socket timeout; /readyz (Public, not rate limited, nginx passes it) probes the chain in a
fresh daemon thread and gives up waiting after 5 s, leaving the thread. Each such thread
waits for the lock, then makes its own 120 s connection attempt: they leave one per 120 s
while a client can add many per second. Threads (and the payout/anchor/deposit jobs, which
wait on the same lock) pile up until the process cannot start threads. Here: 8 requests
leave 8 threads; a probe already in flight should make the next ones answer at once."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kumulus.backend.app import create_app
from kumulus.config import BackendSettings


@pytest.fixture
def silent_node() -> Iterator[str]:
    """Accepts TCP connections and never answers (the websocket handshake hangs)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"ws://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    server.close()


def _probe_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.endswith("(run)"))


def test_anonymous_readyz_calls_do_not_pile_up_threads(tmp_path: Path, silent_node: str) -> None:
    settings = BackendSettings(data_dir=tmp_path / "backend", chain_url=silent_node)
    app = create_app(settings)
    client = TestClient(app)  # not started: no jobs, only the requests
    before = _probe_threads()
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: client.get("/readyz").status_code, range(8)))
    assert codes == [503] * 8
    assert time.monotonic() - started < 30
    left = _probe_threads() - before
    # Failed before the fix: 8 threads left, one connecting (120 s), seven queued on the lock.
    assert left <= 1, f"{left} probe threads left behind by 8 anonymous requests"
