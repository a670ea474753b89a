"""Each start of the agent names its run in its heartbeats (`agentRun`): the same in every
heartbeat of one run, a new one after a restart, so that the backend can tell a restarted
agent and try its host's VMs at once. The backend accepts the field."""

from __future__ import annotations

import re

import httpx
from fastapi.testclient import TestClient

from kumulus.agent.stats import StatsCollector
from kumulus.backend.agent_payloads import HeartbeatPayload
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic


def _collector(fake_agent: TestClient) -> StatsCollector:
    return StatsCollector(
        fake_agent.app.state.service,  # type: ignore[attr-defined]
        keypair_from_mnemonic(new_mnemonic()),
        backend_url="http://backend.test",
        interval=10,
        http=httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(202))),
    )


def test_one_run_id_per_start(fake_agent: TestClient) -> None:
    first = _collector(fake_agent)
    runs = {first.send_once().payload["agentRun"] for _ in range(3)}
    assert len(runs) == 1 and re.fullmatch(r"[0-9a-f]{16}", next(iter(runs)))
    restarted = _collector(fake_agent)
    assert restarted.send_once().payload["agentRun"] not in runs
    payload = {**first.send_once().payload, "hostId": "0123456789abcdef"}
    assert HeartbeatPayload.model_validate(payload).agent_run in runs
