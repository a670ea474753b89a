"""A provider's agent cannot hold a backend thread: every call ends by its deadline, even
against an agent that trickles its answer one byte at a time (which per-read timeouts
never catch), and an answer that is not what the API promises is an ApiError, not a crash."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from kumulus.client import AgentClient, ApiError
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.signed_agent import signed_by


@pytest.fixture
def trickling_agent() -> Iterator[str]:
    """An HTTP server on 127.0.0.1 that sends one byte of its answer every 0.2 s."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100:
                    if stop.is_set():
                        return
                    try:
                        conn.sendall(bytes([byte]))
                    except OSError:
                        break
                    time.sleep(0.2)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(5)
    server.close()


def test_a_trickling_agent_is_cut_off_at_the_deadline(trickling_agent: str) -> None:
    key = keypair_from_mnemonic(new_mnemonic())
    client = AgentClient(
        trickling_agent,
        "host-1",
        key,
        key.ss58_address,
        timeout=5,
        deadline=1.0,
        allow_private=True,
    )
    started = time.monotonic()
    with pytest.raises(ApiError) as caught:
        client.stop_vm("0123456789abcdef")
    assert time.monotonic() - started < 3
    assert caught.value.status is None and caught.value.retry
    assert "within 1 s" in caught.value.detail


@pytest.mark.parametrize("answer", [b"not json", b'{"vmId": 1}', b"[]"])
def test_an_answer_that_is_not_a_vm_is_an_api_error(answer: bytes) -> None:
    key = keypair_from_mnemonic(new_mnemonic())
    host_key = keypair_from_mnemonic(new_mnemonic())
    transport = signed_by(host_key, lambda _: httpx.Response(200, content=answer))
    client = AgentClient(
        "http://agent",
        "host-1",
        key,
        host_key.ss58_address,
        transport=transport,
        allow_private=True,
    )
    with pytest.raises(ApiError) as caught:
        client.get_vm("0123456789abcdef")
    assert caught.value.code == "bad_answer"
