"""An agent's answer is read up to a cap and no further: a larger answer, declared or
streamed without a length, or compressed (which could inflate past the cap), is refused
as `bad_answer` rather than buffered whole."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from kumulus.client import AgentClient, ApiError, CallPolicy
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.signed_agent import signed_by

CAP = 64 << 10
KEY = keypair_from_mnemonic(new_mnemonic())
HOST_KEY = keypair_from_mnemonic(new_mnemonic())


def _client(handler: httpx.MockTransport) -> AgentClient:
    return AgentClient(
        "http://agent",
        "host-1",
        KEY,
        HOST_KEY.ss58_address,
        CallPolicy(allow_private=True, max_answer_bytes=CAP),
        transport=handler,
    )


def _logs(size: int) -> bytes:
    return b'{"vmId": "v", "logs": "' + b"x" * size + b'"}'


def test_an_answer_within_the_cap_is_read() -> None:
    client = _client(signed_by(HOST_KEY, lambda _: httpx.Response(200, content=_logs(CAP - 100))))
    assert len(client.logs("v")) == CAP - 100


def test_a_larger_answer_is_refused() -> None:
    client = _client(signed_by(HOST_KEY, lambda _: httpx.Response(200, content=_logs(CAP))))
    with pytest.raises(ApiError) as caught:
        client.logs("v")
    assert caught.value.code == "bad_answer" and "larger than" in caught.value.detail


def test_an_endless_stream_is_cut_off_at_the_cap() -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while sent < 1 << 30:
            sent += 8192
            yield b"x" * 8192

    transport = httpx.MockTransport(lambda _: httpx.Response(200, content=endless()))
    with pytest.raises(ApiError) as caught:
        _client(transport).logs("v")
    assert caught.value.code == "bad_answer"
    assert sent <= CAP + 8192


def test_a_compressed_answer_is_refused() -> None:
    transport = signed_by(
        HOST_KEY,
        lambda _: httpx.Response(200, content=b"\x1f\x8b", headers={"Content-Encoding": "gzip"}),
    )
    with pytest.raises(ApiError) as caught:
        _client(transport).logs("v")
    assert caught.value.code == "bad_answer"
