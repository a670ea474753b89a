"""A provider's agent cannot hold a backend thread: every call ends by its deadline, even
against an agent that trickles its answer one byte at a time (which per-read timeouts
never catch), and an answer that is not what the API promises is an ApiError, not a crash."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from kumulus.client import AgentClient, ApiError, CallPolicy
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.signed_agent import signed_by
from tests.trickling_agent import trickling_agent


@pytest.fixture
def trickling() -> Iterator[str]:
    with trickling_agent() as (url, _):
        yield url


def test_a_trickling_agent_is_cut_off_at_the_deadline(trickling: str) -> None:
    key = keypair_from_mnemonic(new_mnemonic())
    client = AgentClient(
        trickling,
        "host-1",
        key,
        key.ss58_address,
        timeout=5,
        deadline=1.0,
        policy=CallPolicy(allow_private=True),
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
        policy=CallPolicy(allow_private=True),
    )
    with pytest.raises(ApiError) as caught:
        client.get_vm("0123456789abcdef")
    assert caught.value.code == "bad_answer"
