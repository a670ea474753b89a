"""An agent whose clock was far ahead (beyond the backend's allowed skew) and is then set
right keeps signing its heartbeats far in the future: it is offline until real time
catches up with the clock's old error (hours for an RTC kept in local time).

(Attacker review attack19; fixed: the agent follows its last signed time only while that
is within the allowed skew of its clock.) `StatsCollector.send_once` (agent/stats.py) signs
`max(time.time(), self.last.timestamp + 0.001)`, where `self.last` is the last envelope
it *signed*, whether the backend stored it or not. A machine that boots with its clock
two hours ahead (RTC in local time on a UTC+2 machine, a dead CMOS battery plus a bad
manual fix, a VM restored with a wrong clock) sends its first heartbeat (the job runs at
start) signed two hours ahead; the backend refuses it (401 `bad_signature`, "stale or
future timestamp", `core/signing._check_fresh`, 60 s skew) and stores nothing. NTP then
steps the clock back to the right time, but every later heartbeat is still signed
`last + 0.001`, two hours ahead, and refused the same way: the host is offline (no new
VMs, its VMs billed for disk only, its uptime and reputation falling) for two hours,
until the agent is restarted. Before this change the agent signed `time.time()` and was
back at the next heartbeat.

Fix: only keep ahead of a time the backend may have stored: follow `last` only while it
is within the allowed skew of the clock (`self.last.timestamp - time.time() <=
signature_max_skew`), or only follow envelopes the backend accepted (2xx) or may have
(no answer), not one it refused as stale or future."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi.testclient import TestClient

from kumulus.agent import stats
from kumulus.agent.stats import StatsCollector
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic

REAL = 1_800_000_000.0
AHEAD = 2 * 3600.0  # an RTC in local time on a UTC+2 machine


def test_a_clock_set_right_after_a_refused_future_heartbeat_is_followed(
    fake_agent: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [REAL + AHEAD]  # the agent's
    monkeypatch.setattr(stats.time, "time", lambda: clock[0])
    real_now = [REAL]  # the backend's, right

    def backend(request: httpx.Request) -> httpx.Response:
        # The backend's clock is right: anything signed more than 60 s off is refused.
        signed_at = float(json.loads(request.content)["timestamp"])
        if abs(signed_at - real_now[0]) > 60:
            return httpx.Response(
                401, json={"code": "bad_signature", "detail": "stale or future timestamp"}
            )
        return httpx.Response(202, json={"status": "accepted"})

    collector = StatsCollector(
        fake_agent.app.state.service,  # type: ignore[attr-defined]
        keypair_from_mnemonic(new_mnemonic()),
        backend_url="http://backend.test",
        interval=10,
        http=httpx.Client(transport=httpx.MockTransport(backend)),
    )
    first = collector.send_once()  # at boot, before NTP: refused, nothing stored
    assert first.timestamp == REAL + AHEAD
    clock[0] = REAL + 10  # NTP steps the clock back to the right time
    real_now[0] = REAL + 10
    second = collector.send_once()
    # The backend refused (stored nothing of) the first one: the agent must sign at its
    # clock's time again, not two hours ahead, or the host stays offline for two hours.
    assert abs(second.timestamp - clock[0]) <= 60, second.timestamp - clock[0]
