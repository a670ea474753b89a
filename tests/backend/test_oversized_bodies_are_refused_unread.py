"""A request body over the limit is answered 413 (the platform's error body) before the
app reads it: at once from a declared Content-Length, as soon as a chunked body passes the
limit otherwise; heartbeats have a smaller limit of their own. Run on a real uvicorn, so
what is measured is what the server read from the socket."""

from __future__ import annotations

import json
import select
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kumulus.backend.app import create_app
from kumulus.config import BackendSettings
from tests.live_server import served

THIRTY_MB = 30 << 20


@pytest.fixture
def settings(tmp_path: Path) -> BackendSettings:
    return BackendSettings(data_dir=tmp_path / "backend")


def _answer(sock: socket.socket, timeout: float) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of the HTTP answer on `sock`."""
    sock.setblocking(True)
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), json.loads(body)


def test_a_declared_30_mb_body_is_refused_before_it_is_sent(settings: BackendSettings) -> None:
    with (
        served(create_app(settings)) as (host, port),
        socket.create_connection((host, port)) as sock,
    ):
        began = time.monotonic()
        sock.sendall(
            b"POST /v1/vms HTTP/1.1\r\nHost: backend\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {THIRTY_MB}\r\n\r\n".encode()
            + b"[" * 4096  # a little of it; the rest is never sent
        )
        status, body = _answer(sock, timeout=10)
        took = time.monotonic() - began
    assert status == 413
    assert body["code"] == "too_large" and "1 MiB" in body["detail"], body
    assert took < 2, f"answered after {took:.1f} s"


def test_a_chunked_body_is_cut_off_at_the_limit(settings: BackendSettings) -> None:
    chunk = b"[" * (64 << 10)
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    with (
        served(create_app(settings)) as (host, port),
        socket.create_connection((host, port)) as sock,
    ):
        sock.sendall(
            b"POST /v1/ssh-keys HTTP/1.1\r\nHost: backend\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        sock.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 20
        while sent < THIRTY_MB and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 1)
            if readable:
                break
            if writable:
                try:
                    sent += sock.send(framed)
                except BlockingIOError:
                    continue
        status, body = _answer(sock, timeout=10)
    assert status == 413 and body["code"] == "too_large", body
    # The server stopped reading at 1 MiB; what the client got out beyond that sits in
    # socket buffers.
    assert (1 << 20) < sent < 16 << 20, f"{sent} bytes were taken before the answer"


def test_heartbeats_have_their_own_smaller_limit(settings: BackendSettings) -> None:
    with TestClient(create_app(settings)) as client:
        # 64 KiB of payload plus 1 KiB for the envelope around it.
        resp = client.post("/v1/hosts/heartbeat", content=b"{" + b" " * (66 << 10) + b"}")
        assert resp.status_code == 413
        assert resp.json()["code"] == "too_large" and "65 KiB" in resp.json()["detail"]
        # Within the limit, the body reaches the route (which refuses a non-envelope).
        assert client.post("/v1/hosts/heartbeat", content=b"{}").status_code == 401


def test_the_agent_refuses_large_bodies_too(fake_agent: TestClient) -> None:
    resp = fake_agent.post(
        "/v1/vms", content=b"[" * ((1 << 20) + 1), headers={"Content-Type": "application/json"}
    )
    assert resp.status_code == 413 and resp.json()["code"] == "too_large"
