"""An agent signs each heartbeat later than its previous one, even when the machine's
clock steps back (NTP): the backend stores a heartbeat only when it is signed later than
the newest it has from the host, and would refuse the host's heartbeats until the clock
caught up again (the host looking offline meanwhile)."""

from __future__ import annotations

import itertools

import httpx
import pytest
from fastapi.testclient import TestClient

from kumulus.agent import stats
from kumulus.agent.stats import StatsCollector
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic


def test_signed_times_increase_when_the_clock_steps_back(
    fake_agent: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1_800_000_000.0]
    monkeypatch.setattr(stats.time, "time", lambda: clock[0])
    collector = StatsCollector(
        fake_agent.app.state.service,  # type: ignore[attr-defined]
        keypair_from_mnemonic(new_mnemonic()),
        backend_url="http://backend.test",
        interval=10,
        http=httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(202))),
    )
    times = [collector.send_once().timestamp]
    clock[0] -= 30  # NTP steps the clock back half a minute
    times.append(collector.send_once().timestamp)
    times.append(collector.send_once().timestamp)  # the same instant again
    clock[0] += 40  # past the first again
    times.append(collector.send_once().timestamp)
    assert all(b > a for a, b in itertools.pairwise(times)), times
    assert times[1] - times[0] < 0.01  # just after the last, not far ahead
    assert times[3] == 1_800_000_010.0  # the clock's own time once it is past
