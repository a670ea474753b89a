"""Heartbeats awaited on an event loop (the route's way) are answered on that loop with one
call into it per committed batch, not one per heartbeat (each call from a thread writes the
loop's self-pipe and wakes it); a waiter whose request gave up is skipped, and the others
of its batch still get their outcome."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from substrateinterface import Keypair

from kumulus.backend.api.routes.agents import verify_and_store
from kumulus.backend.heartbeats import HeartbeatWriter, Outcome, VerifiedHeartbeat
from kumulus.backend.models import Heartbeat
from kumulus.core.errors import KumulusError
from kumulus.core.signing import Domain, keypair_from_mnemonic, new_mnemonic, sign_envelope
from tests.backend.conftest import Actor, link_wallet, register_host


def test_one_wakeup_per_batch_and_a_cancelled_waiter_is_skipped(
    backend: TestClient, provider: Actor, wallet: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    keys = [keypair_from_mnemonic(new_mnemonic()) for _ in range(4)]
    hosts = [register_host(backend, provider, wallet, key) for key in keys]
    start = time.time()
    envelopes = [
        sign_envelope(
            keys[i % 4],
            {"kind": "health", "hostId": hosts[i % 4], "agentVersion": "9"},
            domain=Domain.HEARTBEAT,
            now=start + i * 0.001,  # each host's signed in order, as an agent sends them
        )
        for i in range(300)
    ]
    app: Any = backend.app
    writer: HeartbeatWriter = app.state.heartbeats
    settings = app.state.settings
    batches_before = writer.batches

    async def beat_all() -> tuple[list[object], int]:
        loop = asyncio.get_running_loop()
        calls = 0
        real = loop.call_soon_threadsafe

        def counting(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            return real(*args, **kwargs)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        waiters: list[asyncio.Future[Outcome | KumulusError]] = []
        # One thread, as in order as the agents sent them (a host's heartbeat signed
        # before one already stored is refused as a replay).
        with ThreadPoolExecutor(1) as threads:
            for env in envelopes:
                waiter: asyncio.Future[Outcome | KumulusError] = loop.create_future()
                prepared: list[VerifiedHeartbeat] = []
                threads.submit(
                    verify_and_store, env, waiter, prepared,
                    settings=settings, limits=None, writer=writer,
                )  # fmt: skip
                waiters.append(waiter)
            waiters[5].cancel()  # its request timed out: the writer must skip it
            results = await asyncio.gather(*waiters, return_exceptions=True)
        return results, calls

    results, calls = asyncio.run(beat_all())
    assert isinstance(results[5], asyncio.CancelledError)
    others = results[:5] + results[6:]
    assert others == [Outcome.ACCEPTED] * 299
    batches = writer.batches - batches_before
    assert batches < 300  # batched
    assert calls <= batches  # one call into the loop per batch at most, not per heartbeat
    with app.state.db.session() as db:
        stored = db.scalar(select(func.count()).where(Heartbeat.host_id.in_(hosts)))
    # The cancelled one was stored all the same when its thread had already handed it to
    # the writer, and skipped otherwise.
    assert stored in (299, 300)


def test_a_refused_signature_reaches_the_waiter_as_its_exception(
    backend: TestClient, provider: Actor, wallet: Keypair
) -> None:
    app: Any = backend.app
    stranger = keypair_from_mnemonic(new_mnemonic())
    env = sign_envelope(stranger, {"kind": "health", "hostId": "x"}, domain=Domain.HEARTBEAT)
    env = env.model_copy(update={"signature": "0x" + "00" * 64})

    async def one() -> BaseException | object:
        waiter: asyncio.Future[Outcome | KumulusError] = asyncio.get_running_loop().create_future()
        with ThreadPoolExecutor(1) as threads:
            threads.submit(
                verify_and_store, env, waiter, [],
                settings=app.state.settings, limits=None, writer=app.state.heartbeats,
            )  # fmt: skip
            try:
                return await asyncio.wait_for(waiter, 10)
            except KumulusError as exc:
                return exc

    got = asyncio.run(one())
    assert isinstance(got, KumulusError) and got.error_code == "bad_signature"
