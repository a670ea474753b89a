"""Heartbeats arriving together are stored together (group commit), each answered only
after its batch committed; a replay inside one batch is still refused."""

import time
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from substrateinterface import Keypair

from kumulus.backend.api.routes.agents import accept_heartbeat
from kumulus.backend.heartbeats import HeartbeatWriter
from kumulus.backend.models import Heartbeat, Host
from kumulus.backend.reputation import uptime_by_hour
from kumulus.core.errors import KumulusError
from kumulus.core.http import status_of
from kumulus.core.signing import Domain, keypair_from_mnemonic, new_mnemonic, sign_envelope
from tests.backend.conftest import Actor, link_wallet, register_host


def test_concurrent_heartbeats_share_transactions(
    backend: TestClient, provider: Actor, wallet: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    keys = [keypair_from_mnemonic(new_mnemonic()) for _ in range(20)]
    hosts = [register_host(backend, provider, wallet, key) for key in keys]
    start = time.time()
    # Each host sends its heartbeats one after the other, as an agent does (each signed
    # later than the last); the hosts send at once.
    envelopes = [
        [
            sign_envelope(
                key,
                {"kind": "health", "hostId": host, "agentVersion": "9"},
                domain=Domain.HEARTBEAT,
                now=start + n * 0.01,
            )
            for n in range(10)
        ]
        for key, host in zip(keys, hosts, strict=True)
    ]
    app = backend.app
    writer: HeartbeatWriter = app.state.heartbeats  # type: ignore[attr-defined]
    settings = app.state.settings  # type: ignore[attr-defined]
    batches_before = writer.batches

    def send(env):  # type: ignore[no-untyped-def]
        try:
            accept_heartbeat(env, writer, settings)
            return 202
        except KumulusError as exc:
            return status_of(exc)

    def agent(beats):  # type: ignore[no-untyped-def]
        return [send(env) for env in beats]

    with ThreadPoolExecutor(20) as pool:
        codes = [code for sent in pool.map(agent, envelopes) for code in sent]
    assert codes == [202] * 200
    assert writer.batches - batches_before < 200  # batched, not one transaction each
    assert send(envelopes[3][7]) == 401  # a replay
    assert send(envelopes[3][-1]) == 401  # a replay of the newest

    with app.state.db.session() as db:  # type: ignore[attr-defined]
        stored = db.scalar(select(func.count()).where(Heartbeat.host_id.in_(hosts)))
        assert stored == 200
        versions = set(db.scalars(select(Host.agent_version).where(Host.id.in_(hosts))))
        assert versions == {"9"}
        # Every host was heard from more than once: each has uptime.
        assert all(sum(uptime_by_hour(db, h).values()) > 0 for h in hosts)


def test_heartbeat_for_a_host_of_another_wallet_is_404(
    backend: TestClient,
    provider: Actor,
    other_provider: Actor,
    wallet: Keypair,
    host_key: Keypair,
) -> None:
    link_wallet(backend, provider, wallet)
    host_id = register_host(backend, provider, wallet, host_key)
    stranger = keypair_from_mnemonic(new_mnemonic())
    env = sign_envelope(stranger, {"kind": "health", "hostId": host_id}, domain=Domain.HEARTBEAT)
    resp = backend.post("/v1/hosts/heartbeat", json=env.model_dump())
    assert resp.status_code == 404
    # Nothing was stored for a refused heartbeat.
    with backend.app.state.db.session() as db:  # type: ignore[attr-defined]
        assert db.scalar(select(func.count()).where(Heartbeat.host_id == host_id)) == 0
