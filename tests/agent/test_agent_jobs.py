"""The agent's loops (guard, health stats) run as jobs on one runner: the stats round comes
right at start, and an engine that is away is reported, not fatal."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from kumulus.agent.runtime import EngineError
from kumulus.agent.stats import StatsCollector
from kumulus.core.jobs import JobRunner
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic


def test_the_guard_is_a_job_of_the_agent(fake_agent: TestClient) -> None:
    jobs: JobRunner = fake_agent.app.state.jobs  # type: ignore[attr-defined]
    assert jobs.names == ["guard", "lxcfs", "leftovers"]  # no wallet in this fixture: no stats job
    assert jobs.run_now("guard").ran
    assert jobs.stats()["guard"].failures == 0


def test_stats_run_at_start_and_tell_when_the_engine_is_away(fake_agent: TestClient) -> None:
    service = fake_agent.app.state.service  # type: ignore[attr-defined]
    collector = StatsCollector(
        service, keypair_from_mnemonic(new_mnemonic()), backend_url=None, interval=60
    )
    runner = JobRunner([collector.job()])
    runner.start()
    deadline = time.monotonic() + 5
    while collector.last is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert collector.last is not None  # no need to wait one interval for the first round

    def engine_away() -> list[object]:
        raise EngineError("engine away")

    service.runtime.list = engine_away  # collect() copes: docker reported down
    collector.service = service
    assert runner.run_now("stats").ran
    assert collector.last.payload["docker"]["up"] is False
    runner.stop(timeout=2)
    assert runner.stats()["stats"].failures == 0
