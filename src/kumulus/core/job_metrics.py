"""Prometheus metrics of one process's named jobs (core/jobs.py), for backend and agent.

Counters and gauges are read from the runner's stats at scrape time (the runner is the one
place that counts); durations go into a histogram the runner feeds through its observer.
`kumulus_job_consecutive_failures` is the alert signal: it is 0 after any success and
grows by one with each failed run, so "> 3 for 10 minutes" means a job keeps failing (see
deploy/prometheus/kumulus-alerts.yml)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kumulus.core.jobs import JobRunner

BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class JobMetrics(Collector):
    """Register once per app; `observe` is the runner's observer; `attach` names the runner
    (which may be made after the registry, e.g. in the agent's lifespan)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._runner: Callable[[], JobRunner | None] = lambda: None
        self._durations = Histogram(
            "kumulus_job_duration_seconds",
            "duration of each finished run of a named job, by job and outcome",
            ["job", "outcome"],
            buckets=BUCKETS,
            registry=None,  # yielded by collect(), with the rest
        )
        registry.register(self)

    def attach(self, runner: JobRunner) -> None:
        self._runner = lambda: runner

    def observe(self, job: str, seconds: float, ok: bool) -> None:
        self._durations.labels(job, "ok" if ok else "failed").observe(seconds)

    def collect(self) -> Iterable[Metric]:
        runner = self._runner()
        stats = runner.stats() if runner is not None else {}
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            "runs": CounterMetricFamily(
                "kumulus_job_runs", "runs of a named job in this process", labels=["job"]
            ),
            "failures": CounterMetricFamily(
                "kumulus_job_failures", "failed runs of a named job in this process", labels=["job"]
            ),
            "overruns": CounterMetricFamily(
                "kumulus_job_overruns", "runs longer than the job's timeout", labels=["job"]
            ),
            "skipped": CounterMetricFamily(
                "kumulus_job_skipped",
                "attempts skipped because another process held the job's lease",
                labels=["job"],
            ),
            "leases_lost": CounterMetricFamily(
                "kumulus_job_leases_lost",
                "runs whose lease another process took over while they ran (fenced: their "
                "later commits refused)",
                labels=["job"],
            ),
            "consecutive_failures": GaugeMetricFamily(
                "kumulus_job_consecutive_failures",
                "failed runs since the job's last success in this process (alert when it grows)",
                labels=["job"],
            ),
            "running": GaugeMetricFamily(
                "kumulus_job_running", "1 while a run of the job is in progress", labels=["job"]
            ),
            "last_duration": GaugeMetricFamily(
                "kumulus_job_last_duration_seconds", "duration of the last finished run",
                labels=["job"],
            ),
            "last_success": GaugeMetricFamily(
                "kumulus_job_last_success_timestamp_seconds",
                "when the job last succeeded in this process (absent: never)",
                labels=["job"],
            ),
        }  # fmt: skip
        for name, s in sorted(stats.items()):
            counts = ("runs", "failures", "overruns", "skipped", "leases_lost")
            for key in (*counts, "consecutive_failures"):
                families[key].add_metric([name], getattr(s, key))
            families["running"].add_metric([name], int(s.running))
            if s.last_duration is not None:
                families["last_duration"].add_metric([name], s.last_duration)
            if s.last_success is not None:
                families["last_success"].add_metric([name], s.last_success)
        yield from families.values()
        yield from self._durations.collect()
