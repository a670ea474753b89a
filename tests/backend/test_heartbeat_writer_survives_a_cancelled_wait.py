"""A heartbeat whose request stopped waiting (its 30 s ran out, or it was cancelled) before
its batch committed must not stop the writer: the route awaits the writer's future through
`asyncio.wrap_future`, whose cancellation cancels that future, and the writer then resolved
it anyway (InvalidStateError), which ended its thread and every later heartbeat was 503."""

import asyncio
import threading

import pytest
from fastapi.testclient import TestClient
from substrateinterface import Keypair

from kumulus.backend.api.routes.agents import prepare_heartbeat
from kumulus.backend.heartbeats import HeartbeatWriter
from kumulus.core.signing import Domain, sign_envelope
from tests.backend.conftest import Actor, link_wallet, register_host


def test_writer_survives_a_heartbeat_whose_wait_was_cancelled(
    backend: TestClient, provider: Actor, wallet: Keypair, host_key: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    host_id = register_host(backend, provider, wallet, host_key)
    app = backend.app
    writer: HeartbeatWriter = app.state.heartbeats  # type: ignore[attr-defined]
    settings = app.state.settings  # type: ignore[attr-defined]

    def beat() -> object:
        return sign_envelope(
            host_key, {"kind": "health", "hostId": host_id}, domain=Domain.HEARTBEAT
        )

    # A slow batch (a database under load): the writer is busy while the request gives up.
    busy, release = threading.Event(), threading.Event()
    write = writer._write

    def slow_write(batch):  # type: ignore[no-untyped-def]
        busy.set()
        release.wait(10)
        return write(batch)

    writer._write = slow_write  # type: ignore[method-assign]
    first = prepare_heartbeat(beat(), settings)  # type: ignore[arg-type]
    queued = prepare_heartbeat(beat(), settings)  # type: ignore[arg-type]

    async def give_up() -> None:
        writer.submit(first)
        assert busy.wait(5)
        # What the route does (`await asyncio.wrap_future(...)` under `fail_after`), with
        # a shorter patience.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.wrap_future(writer.submit(queued)), 0.2)

    asyncio.run(give_up())
    writer._write = write  # type: ignore[method-assign]
    release.set()
    assert first.done.result(timeout=10) is not None

    # The writer still stores heartbeats.
    resp = backend.post("/v1/hosts/heartbeat", json=beat().model_dump())  # type: ignore[attr-defined]
    assert resp.status_code == 202, resp.text
