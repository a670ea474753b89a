"""The job runner: jobs are isolated from each other (a failing or slow job never stops or
delays another), overruns are counted, and a lease keeps two runners from running one job
at the same time."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pytest

from kumulus.core.jobs import Job, JobRunner, LeaseUse
from tests.overlap import OverlapProbe


class MemoryLease:
    """The Lease protocol in memory, shared by runners like a database row would be."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, tuple[str, float, int]] = {}  # owner, expiry, token
        self._tokens = 0
        self.now: Callable[[], float] = time.monotonic

    def acquire(self, name: str, owner: str, ttl: float) -> int | None:
        with self._lock:
            holder = self._held.get(name)
            if holder is not None and holder[0] == owner and holder[1] >= self.now():
                token = holder[2]
            elif holder is None or holder[1] < self.now():
                self._tokens += 1
                token = self._tokens
            else:
                return None
            self._held[name] = (owner, self.now() + ttl, token)
            return token

    def renew(self, name: str, owner: str, token: int, ttl: float) -> bool:
        with self._lock:
            holder = self._held.get(name)
            if holder is None or holder[:1] + holder[2:] != (owner, token):
                return False
            self._held[name] = (owner, self.now() + ttl, token)
            return True

    def release(self, name: str, owner: str) -> None:
        with self._lock:
            if self._held.get(name, ("", 0.0, 0))[0] == owner:
                del self._held[name]


def _wait_for(check: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_failing_job_never_stops_another(caplog: pytest.LogCaptureFixture) -> None:
    ticks: list[float] = []

    def broken() -> None:
        raise RuntimeError("boom")

    runner = JobRunner(
        [Job("broken", 0.01, 1, broken), Job("ticker", 0.01, 1, lambda: ticks.append(1))]
    )
    with caplog.at_level(logging.ERROR):
        runner.start()
        _wait_for(lambda: runner.stats()["broken"].failures >= 5 and len(ticks) >= 5)
        assert runner.stop(timeout=2) == []
    stats = runner.stats()
    assert stats["broken"].last_error == "RuntimeError: boom"
    assert stats["broken"].last_success is None
    assert stats["ticker"].failures == 0 and stats["ticker"].last_success is not None
    assert "job broken failed" in caplog.text  # the name, for whoever reads the log


def test_a_slow_job_never_delays_another() -> None:
    release = threading.Event()
    ticks: list[float] = []
    runner = JobRunner(
        [
            Job("stuck", 0.01, 60, release.wait, run_at_start=True),
            Job("ticker", 0.01, 1, lambda: ticks.append(1)),
        ]
    )
    runner.start()
    _wait_for(lambda: len(ticks) >= 10)
    assert runner.stats()["stuck"].running
    release.set()
    assert runner.stop(timeout=2) == []


def test_overruns_are_logged_while_running_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runner = JobRunner([Job("slow", 60, 0.05, lambda: time.sleep(0.2))])
    with caplog.at_level(logging.WARNING):
        assert runner.run_now("slow").ran
        runner.run_now("slow")
    stats = runner.stats()
    assert (stats["slow"].runs, stats["slow"].overruns, stats["slow"].failures) == (2, 2, 0)
    assert stats["slow"].last_duration is not None and stats["slow"].last_duration >= 0.2
    assert caplog.text.count("job slow still running after its timeout") == 2


def test_run_now_returns_the_value_and_reraises_after_counting() -> None:
    def fails() -> None:
        raise ValueError("no")

    runner = JobRunner([Job("answer", 60, 1, lambda: 42), Job("fails", 60, 1, fails)])
    assert runner.run_now("answer").value == 42
    with pytest.raises(ValueError, match="no"):
        runner.run_now("fails")
    assert runner.stats()["fails"].failures == 1
    with pytest.raises(KeyError, match="no job nope"):
        runner.run_now("nope")


def test_two_runners_on_one_lease_never_run_a_job_concurrently() -> None:
    lease = MemoryLease()
    probe = OverlapProbe(hold=0.02)

    runners = [JobRunner([Job("exclusive", 0.001, 5, probe, lease=lease)]) for _ in range(3)]
    for runner in runners:
        runner.start()
    _wait_for(lambda: probe.runs >= 20)
    for runner in runners:
        assert runner.stop(timeout=2) == []
    assert probe.most == 1
    assert sum(r.stats()["exclusive"].skipped for r in runners) > 0  # they did contend
    assert sum(r.stats()["exclusive"].runs for r in runners) == probe.runs


def test_once_per_interval_runs_once_across_runners_until_the_interval_passes() -> None:
    lease = MemoryLease()
    clock = [1000.0]
    lease.now = lambda: clock[0]
    done: list[str] = []
    a, b = (
        JobRunner(
            [
                Job("daily", 86400, 5, lambda n=n: done.append(n), lease=lease,  # type: ignore[misc]
                    lease_use=LeaseUse.ONCE_PER_INTERVAL, poll=1)
            ]
        )
        for n in ("a", "b")
    )  # fmt: skip
    assert a.run_now("daily").ran
    assert not a.run_now("daily").ran and not b.run_now("daily").ran
    assert b.run_now("daily", ignore_lease=True).ran  # forced
    clock[0] += 86401
    assert b.run_now("daily").ran
    assert done == ["a", "b", "b"]
    assert a.stats()["daily"].skipped == 1 and b.stats()["daily"].skipped == 1


def test_a_lease_store_that_is_away_is_a_failure_of_that_job_only() -> None:
    class Away:
        def acquire(self, name: str, owner: str, ttl: float) -> int | None:
            raise ConnectionError("database away")

        def renew(self, name: str, owner: str, token: int, ttl: float) -> bool:
            raise AssertionError("never held")

        def release(self, name: str, owner: str) -> None:
            raise AssertionError("never held")

    runner = JobRunner([Job("leased", 60, 1, lambda: None, lease=Away())])
    with pytest.raises(ConnectionError):
        runner.run_now("leased")
    stats = runner.stats()["leased"]
    assert (stats.failures, stats.running) == (1, False)
    assert stats.last_error == "ConnectionError: database away"


def test_stop_is_bounded_and_names_the_jobs_still_running() -> None:
    release = threading.Event()
    runner = JobRunner([Job("stuck", 60, 60, release.wait, run_at_start=True)])
    runner.start()
    _wait_for(lambda: runner.stats()["stuck"].running)
    started = time.monotonic()
    assert runner.stop(timeout=0.2) == ["stuck"]
    assert time.monotonic() - started < 1
    release.set()


def test_expected_errors_are_one_line(caplog: pytest.LogCaptureFixture) -> None:
    def away() -> None:
        raise TimeoutError("chain away")

    runner = JobRunner([Job("chain", 60, 1, away, expected=(TimeoutError,))])
    with caplog.at_level(logging.WARNING), pytest.raises(TimeoutError):
        runner.run_now("chain")
    assert "job chain failed: TimeoutError: chain away" in caplog.text
    assert "Traceback" not in caplog.text
