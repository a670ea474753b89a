"""A host whose agent restarted (a new run id in its heartbeats) or whose container engine
answers again (a heartbeat with `docker.up` after one without) gets its VMs' pending
intents tried at the jobs' next run, as a host back from a silence longer than the TTL
does: both happen within the TTL, and the backoff the failed calls built up meanwhile (up
to 10 minutes) kept the VMs waiting after the host was fine again. The same run with the
engine up all along changes nothing."""

from __future__ import annotations

import secrets
import time
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from substrateinterface import Keypair

from kumulus.backend.api.routes.agents import accept_heartbeat
from kumulus.backend.clock import aware, utcnow
from kumulus.backend.models import VM, Host
from kumulus.core.signing import Domain, sign_envelope
from tests.backend.conftest import Actor, link_wallet, register_host

GIB = 1 << 30
RUN, OTHER_RUN = "0123456789abcdef", "fedcba9876543210"


def _backed_off_vm(host_id: str, account_id: int) -> VM:
    now = utcnow()
    return VM(
        id=secrets.token_hex(8), account_id=account_id, name="vm", username="dev",
        ssh_key="ssh-ed25519 AAAA", cpu=1.0, memory=GIB, disk=GIB, region="eu",
        intended_state="running", actual_state="pending", reserved=True, host_id=host_id,
        created_at=now, updated_at=now, converge_attempts=6,
        converge_after=now + timedelta(minutes=8),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("before", "after", "tried"),
    [
        ((RUN, True), (OTHER_RUN, True), True),  # the agent restarted
        ((RUN, False), (RUN, True), True),  # its engine answers again
        ((RUN, True), (RUN, True), False),  # nothing happened
        ((RUN, False), (RUN, False), False),  # the engine is still down
        ((RUN, True), (None, None), False),  # an older agent says nothing of either
    ],
)
def test_backoff_ends_when_the_agent_or_its_engine_comes_back(
    backend: TestClient,
    provider: Actor,
    developer: Actor,
    wallet: Keypair,
    host_key: Keypair,
    before: tuple[str | None, bool | None],
    after: tuple[str | None, bool | None],
    tried: bool,
) -> None:
    link_wallet(backend, provider, wallet)
    host_id = register_host(backend, provider, wallet, host_key)
    app: Any = backend.app
    start = time.time()

    def beat(state: tuple[str | None, bool | None], at: float) -> None:
        payload: dict[str, Any] = {"kind": "health", "hostId": host_id, "agentVersion": "9"}
        if state[0] is not None:
            payload["agentRun"] = state[0]
        if state[1] is not None:
            payload["docker"] = {"up": state[1]}
        envelope = sign_envelope(host_key, payload, domain=Domain.HEARTBEAT, now=at)
        accept_heartbeat(envelope, app.state.heartbeats, app.state.settings)

    beat(before, start)
    with app.state.db.session() as db:
        host = db.get(Host, host_id)
        assert host is not None and (host.agent_run, host.engine_up) == before
        vm = _backed_off_vm(host_id, developer.id)
        db.add(vm)
        db.commit()
        vm_id = vm.id
    beat(after, start + 1)

    now = utcnow()
    with app.state.db.session() as db:
        vm = db.get(VM, vm_id)
        assert vm is not None
        if tried:
            assert vm.converge_attempts == 0
            assert aware(vm.converge_after) <= now  # due at the next run
        else:
            assert vm.converge_attempts == 6
            assert aware(vm.converge_after) > now + timedelta(minutes=7)
        host = db.get(Host, host_id)
        assert host is not None  # what an older agent leaves out is kept as it was
        assert host.agent_run == (after[0] or before[0])
        assert host.engine_up == (before[1] if after[1] is None else after[1])
