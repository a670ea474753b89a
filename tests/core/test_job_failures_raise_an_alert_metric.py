"""A job that keeps failing shows in its metrics: runs, failures, durations by outcome and
`kumulus_job_consecutive_failures` (the alert signal), which a success resets."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry

from kumulus.core.job_metrics import JobMetrics
from kumulus.core.jobs import Job, JobRunner


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_consecutive_failures_grow_and_reset() -> None:
    outcomes = [False, False, False, True, False]

    def flaky() -> None:
        if not outcomes.pop(0):
            raise RuntimeError("the chain is away")

    registry = CollectorRegistry()
    metrics = JobMetrics(registry)
    runner = JobRunner([Job("deposits", 60, 60, flaky)], observer=metrics.observe)
    metrics.attach(runner)
    seen = []
    for _ in range(5):
        with contextlib.suppress(RuntimeError):
            runner.run_now("deposits")
        seen.append(_value(registry, "kumulus_job_consecutive_failures", job="deposits"))
    assert seen == [1, 2, 3, 0, 1]
    assert _value(registry, "kumulus_job_runs_total", job="deposits") == 5
    assert _value(registry, "kumulus_job_failures_total", job="deposits") == 4
    failed = _value(
        registry, "kumulus_job_duration_seconds_count", job="deposits", outcome="failed"
    )
    ok = _value(registry, "kumulus_job_duration_seconds_count", job="deposits", outcome="ok")
    assert (failed, ok) == (4, 1)
    assert _value(registry, "kumulus_job_last_success_timestamp_seconds", job="deposits")


def test_a_failing_observer_never_fails_the_job() -> None:
    def broken(name: str, seconds: float, ok: bool) -> None:
        raise ValueError("metrics are broken")

    runner = JobRunner([Job("prune", 60, 60, lambda: 7)], observer=broken)
    assert runner.run_now("prune").value == 7
    assert runner.stats()["prune"].consecutive_failures == 0
