"""An HTTP server on 127.0.0.1 standing for a provider's agent that trickles its answer,
one byte every `every` seconds: per-read timeouts never catch it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def trickling_agent(every: float = 0.2) -> Iterator[tuple[str, threading.Event]]:
    """Serve until the block ends; yields (base URL, an event set once a call came in)."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    called = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            called.set()
            with conn:
                conn.recv(65536)
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100:
                    if stop.is_set():
                        return
                    try:
                        conn.sendall(bytes([byte]))
                    except OSError:
                        break
                    time.sleep(every)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", called
    finally:
        stop.set()
        thread.join(5)
        server.close()
