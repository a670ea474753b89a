"""At most a few calls run at once to one host (per process): a host that holds its calls
holds that many of our threads and no more; the next call waits briefly for a slot, then
fails as `host_busy` (retried later like any failed call), and other hosts are untouched."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from kumulus.client import AgentClient, ApiError, CallPolicy
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from kumulus.host_slots import HostSlots
from tests.signed_agent import signed_by

KEY = keypair_from_mnemonic(new_mnemonic())
HOST_KEY = keypair_from_mnemonic(new_mnemonic())


def test_a_slow_host_holds_at_most_its_slots() -> None:
    release = threading.Event()
    holding = threading.Semaphore(0)

    def answer(request: httpx.Request) -> httpx.Response:
        if request.headers["x-kumulus-audience"] == "slow":
            holding.release()
            release.wait(10)  # the host takes its time
        return httpx.Response(200, json={"vmId": "v", "logs": "ok"})

    transport = signed_by(HOST_KEY, answer)
    slots = HostSlots(per_host=2, wait=0.3)

    def client(host_id: str) -> AgentClient:
        return AgentClient(
            "http://agent",
            host_id,
            KEY,
            HOST_KEY.ss58_address,
            CallPolicy(allow_private=True, slots=slots),
            transport=transport,
        )

    held = [threading.Thread(target=client("slow").logs, args=("v",)) for _ in range(2)]
    try:
        for thread in held:
            thread.start()
        assert holding.acquire(timeout=5) and holding.acquire(timeout=5)
        began = time.monotonic()
        with pytest.raises(ApiError) as caught:
            client("slow").logs("v")
        assert caught.value.code == "host_busy" and caught.value.retry
        assert caught.value.status is None
        assert time.monotonic() - began < 2
        assert client("other").logs("v") == "ok"  # another host is not held up
    finally:
        release.set()
        for thread in held:
            thread.join(10)
    assert client("slow").logs("v") == "ok"  # the slots are given back
