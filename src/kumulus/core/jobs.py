"""Periodic background jobs of one process (backend or agent), each isolated from the others.

Contract of a `JobRunner`:

- every job runs on its own thread, so a slow or stuck job never delays another one;
- a run is inside its own error boundary: an exception is logged with the job's name, counted
  and remembered (`last_error`), and the job runs again after its interval;
- a run longer than the job's `timeout` is an overrun: logged (while it is still running, so a
  stuck job shows) and counted; Python cannot kill a thread, so the run itself goes on;
- within one runner, runs of one job never overlap (`run_now` waits for a scheduled run);
- a job with a lease shares it with the other processes holding the same lease store, in one
  of two ways (`LeaseUse`): EXCLUSIVE, one process at a time runs it: the lease lasts
  `lease_ttl` (short) and a renewer thread extends it every third of that while the run
  goes on, up to the job's `timeout`; it is released after the run. So a holder that dies
  blocks the others for at most `lease_ttl`, a stuck one for `timeout` + `lease_ttl`.
  ONCE_PER_INTERVAL, at most one run per `interval` across all processes and restarts (the
  lease has ttl = interval and nobody releases it: only its expiry lets the next run in; the
  runner asks every `poll` seconds so a restarted process does not wait a whole interval);
- fencing: an EXCLUSIVE run's holding (name, owner, token) is bound to its context
  (`current_hold()`) for the lease store to check at each commit. A holding another process
  took over is lost for good: the renewer marks it, `check_lease()` raises
  `LeaseLostError` between steps, and the store refuses its commits (backend/lease_fence.py).
  A run that lost its lease counts in `leases_lost`; one stopped by it fails with
  `LeaseLostError` (logged in one line). Before an effect no commit can fence (a chain
  extrinsic), `check_lease(before_effect=True)` also stops a run whose holding was not
  confirmed recently (by acquire, renewal or a fenced commit) to stand a third of its ttl
  longer: a stalled holder may have been replaced without knowing it yet.

Nothing here is global: every runner has its own threads, stop event and stats.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Protocol

from kumulus.core import request_ids
from kumulus.core.errors import UnavailableError

log = logging.getLogger(__name__)


class Lease(Protocol):
    """A named lease shared by processes (e.g. a database row)."""

    def acquire(self, name: str, owner: str, ttl: float) -> int | None:
        """Take or renew `name` for `ttl` seconds. The holding's token (>= 1) if `owner` now
        holds it, None if another owner does. Taking it anew (from another owner, or after
        it expired) gives a new token; renewing an unexpired holding keeps it."""
        ...

    def renew(self, name: str, owner: str, token: int, ttl: float) -> bool:
        """Extend the holding (`owner`, `token`) to `ttl` seconds from now; False if the lease
        changed hands since (then that holding is lost for good)."""
        ...

    def release(self, name: str, owner: str) -> None:
        """Give `name` up if `owner` holds it, so others need not wait for the expiry."""
        ...


class LeaseUse(Enum):
    EXCLUSIVE = "exclusive"
    ONCE_PER_INTERVAL = "once_per_interval"


DEFAULT_LEASE_TTL = 30.0


class LeaseLostError(UnavailableError):
    """The run's lease moved to another process: its remaining work is not done here (the
    new holder does it)."""

    code = "lease_lost"


@dataclass
class LeaseHold:
    """One EXCLUSIVE run's holding of its lease, bound to the run's context."""

    name: str
    owner: str
    token: int
    ttl: float
    # Monotonic time until which the holding surely stands: the start of its last
    # confirmed acquire/renewal plus its ttl (others take it only once that has passed, by
    # their clocks).
    confirmed_until: float = 0.0
    _lost: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def mark_lost(self) -> None:
        self._lost.set()

    def confirm(self, since: float) -> None:
        """The holding was renewed by a write issued at monotonic time `since`."""
        with self._lock:
            self.confirmed_until = max(self.confirmed_until, since + self.ttl)

    def stands_for(self) -> float:
        """Seconds the holding surely stands from now (negative: it may have lapsed)."""
        return self.confirmed_until - time.monotonic()


_hold: ContextVar[LeaseHold | None] = ContextVar("kumulus_lease_hold", default=None)


def current_hold() -> LeaseHold | None:
    """The holding of the leased run this code runs in (None outside one). Threads the run
    starts see it only if they copy the context (`contextvars.copy_context`)."""
    return _hold.get()


def check_lease(before_effect: bool = False) -> None:
    """Raise LeaseLostError if the calling run lost its lease: long jobs call it between
    steps (before an agent call), so a holder that lost its lease stops. `before_effect`
    (before a chain extrinsic, which nothing can take back): also raise unless the holding
    surely stands a third of its ttl longer; that third covers the effect leaving this
    process and the clock skew between processes. Outside a leased run, nothing."""
    hold = _hold.get()
    if hold is None:
        return
    if hold.lost:
        raise LeaseLostError(f"job {hold.name}: its lease moved to another process")
    if before_effect and hold.stands_for() < hold.ttl / 3:
        raise LeaseLostError(
            f"job {hold.name}: its lease was not confirmed for {hold.ttl - hold.stands_for():.1f} s"
            "; another process may hold it now"
        )


@contextmanager
def _holding(hold: LeaseHold | None) -> Iterator[None]:
    token = _hold.set(hold)
    try:
        yield
    finally:
        _hold.reset(token)


@dataclass(frozen=True)
class Job:
    """What to run and how often.

    `interval`: seconds from the end of one run to the start of the next (the first run comes
    one interval after `start` unless `run_at_start`, so a process that just started is not
    busy at once); for
    ONCE_PER_INTERVAL, the period across processes. `timeout`: a run longer than this is an
    overrun, and its EXCLUSIVE lease is no longer renewed. `lease_ttl`: how long an
    EXCLUSIVE lease lasts unrenewed (a dead holder's jobs wait this long). `expected`:
    exception types that are a normal failure (a chain that is away): logged in one line,
    without a traceback. `lease_name`: the lease's name when it is not the job's (a lease
    older than the job)."""

    name: str
    interval: float
    timeout: float
    fn: Callable[[], object]
    lease: Lease | None = None
    lease_use: LeaseUse = LeaseUse.EXCLUSIVE
    poll: float | None = None  # ONCE_PER_INTERVAL: how often to ask the lease
    expected: tuple[type[Exception], ...] = ()
    run_at_start: bool = False  # first run right at `start` instead of one wait later
    lease_ttl: float = DEFAULT_LEASE_TTL
    lease_name: str | None = None

    @property
    def lease_key(self) -> str:
        return self.lease_name or self.name

    def __post_init__(self) -> None:
        if (
            min(self.interval, self.timeout, self.lease_ttl) <= 0
            or (self.poll is not None and self.poll <= 0)
        ):  # fmt: skip
            raise ValueError(f"job {self.name}: interval, timeout, lease_ttl and poll must be > 0")

    @property
    def wait(self) -> float:
        """Seconds the job's thread sleeps between attempts."""
        if self.lease is not None and self.lease_use is LeaseUse.ONCE_PER_INTERVAL:
            return min(self.interval, self.poll or self.interval)
        return self.interval


@dataclass
class JobStats:
    """Counters of one job since its runner was made (times are wall-clock epoch seconds)."""

    runs: int = 0  # runs that started (succeeded or failed)
    failures: int = 0
    consecutive_failures: int = 0  # failed runs since the last success (alerts watch it)
    overruns: int = 0
    skipped: int = 0  # attempts where the lease was held elsewhere
    leases_lost: int = 0  # runs whose lease another process took over while they ran
    running: bool = False
    last_started: float | None = None
    last_duration: float | None = None  # seconds, of the last finished run
    last_error: str | None = None  # of the last failed run (kept after later successes)
    last_success: float | None = None


@dataclass(frozen=True)
class RunResult:
    """What `run_now` did: `ran` False when the lease was held elsewhere."""

    ran: bool
    value: object = None


@dataclass
class _State:
    job: Job
    stats: JobStats = field(default_factory=JobStats)
    run_lock: threading.Lock = field(default_factory=threading.Lock)
    run_id: int = 0
    overrun_counted: bool = False
    thread: threading.Thread | None = None


def default_owner() -> str:
    """A lease owner id unique to this process (and to this runner within it). The host name
    is cut to 32 characters: the owner column holds 64, with room for a run's suffix."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(4)}"


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


class JobRunner:
    """Runs `jobs` (unique names) on their own threads between `start` and `stop`.

    `observer(name, seconds, ok)` is told of every finished run (metrics); it must not
    raise and must be quick: it runs on the job's thread."""

    def __init__(
        self,
        jobs: Sequence[Job],
        owner: str | None = None,
        observer: Callable[[str, float, bool], None] | None = None,
    ) -> None:
        self.owner = owner or default_owner()
        self.observer = observer
        self._states: dict[str, _State] = {}
        for job in jobs:
            if job.name in self._states:
                raise ValueError(f"two jobs named {job.name}")
            self._states[job.name] = _State(job)
        self._stop = threading.Event()
        self._stats_lock = threading.Lock()  # never held while a job runs

    @property
    def names(self) -> list[str]:
        return list(self._states)

    def stats(self) -> dict[str, JobStats]:
        """A snapshot of every job's counters."""
        with self._stats_lock:
            return {name: replace(state.stats) for name, state in self._states.items()}

    def start(self) -> None:
        """Start one daemon thread per job (once)."""
        for name, state in self._states.items():
            if state.thread is not None:
                continue
            state.thread = threading.Thread(
                target=self._loop, args=(state,), name=f"job-{name}", daemon=True
            )
            state.thread.start()

    def stop(self, timeout: float = 10.0) -> list[str]:
        """Stop scheduling runs and wait up to `timeout` seconds in total for runs in
        progress; returns the names of jobs still running after that (their daemon threads
        end with the process)."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        still: list[str] = []
        for name, state in self._states.items():
            if state.thread is None:
                continue
            state.thread.join(max(0.0, deadline - time.monotonic()))
            if state.thread.is_alive():
                still.append(name)
        if still:
            log.warning("jobs still running at shutdown: %s", ", ".join(still))
        return still

    def run_now(self, name: str, *, ignore_lease: bool = False) -> RunResult:
        """Run job `name` once in the caller's thread, now (after a run in progress), with
        the same lease, accounting and logging as a scheduled run; `ignore_lease` runs it
        whoever holds the lease (a forced run). An exception is counted, then re-raised."""
        state = self._states.get(name)
        if state is None:
            raise KeyError(f"no job {name}; jobs: {', '.join(self._states)}")
        return self._run(state, ignore_lease)

    def _loop(self, state: _State) -> None:
        wait = 0.0 if state.job.run_at_start else state.job.wait
        while not self._stop.wait(wait):
            wait = state.job.wait
            try:
                self._run(state, ignore_lease=False)
            except Exception:  # noqa: S112 - counted and logged by _run; the loop goes on
                continue

    def _run(self, state: _State, ignore_lease: bool) -> RunResult:
        job = state.job
        with state.run_lock:
            hold = None
            try:
                if job.lease is not None and not ignore_lease:
                    if job.lease_use is LeaseUse.ONCE_PER_INTERVAL:
                        # A fresh owner each time: nobody renews the schedule, only its
                        # expiry lets the next run in (here or in another process). Named
                        # after this runner, so operators see which process ran it last.
                        taken = job.lease.acquire(
                            job.lease_key, f"{self.owner}~{secrets.token_hex(4)}", job.interval
                        )
                        if taken is None:
                            return self._skipped(state)
                    else:
                        asked = time.monotonic()
                        token = job.lease.acquire(job.lease_key, self.owner, job.lease_ttl)
                        if token is None:
                            return self._skipped(state)
                        hold = LeaseHold(job.lease_key, self.owner, token, job.lease_ttl)
                        hold.confirm(asked)
            except Exception as exc:  # the lease store is away: a failure of this job
                started = self._begin(state)
                self._failed(state, exc, started)
                self._finish(state, started, ok=False)
                raise
            started = self._begin(state)
            watchdog = threading.Timer(job.timeout, self._overrun, (state, state.run_id))
            watchdog.daemon = True
            watchdog.start()
            renewer = _Renewer(job, hold) if hold is not None else None
            ok = False
            try:
                # One request id per run (its log lines and agent calls), and its holding
                # for fenced commits.
                with request_ids.bound(), _holding(hold):
                    value = job.fn()
                ok = True
            except Exception as exc:
                self._failed(state, exc, started)
                raise
            finally:
                watchdog.cancel()
                if renewer is not None:
                    renewer.stop()
                if hold is not None and hold.lost:
                    with self._stats_lock:
                        state.stats.leases_lost += 1
                self._finish(state, started, ok)
                if hold is not None:
                    self._release(job, hold.owner)
            return RunResult(True, value)

    def _skipped(self, state: _State) -> RunResult:
        with self._stats_lock:
            state.stats.skipped += 1
        return RunResult(False)

    def _begin(self, state: _State) -> float:
        with self._stats_lock:
            state.run_id += 1
            state.overrun_counted = False
            state.stats.runs += 1
            state.stats.running = True
            state.stats.last_started = time.time()
        return time.monotonic()

    def _finish(self, state: _State, started: float, ok: bool) -> None:
        duration = time.monotonic() - started
        with self._stats_lock:
            state.stats.running = False
            state.stats.last_duration = duration
            if ok:
                state.stats.last_success = time.time()
                state.stats.consecutive_failures = 0
            late = duration > state.job.timeout and not state.overrun_counted
            if late:  # the watchdog did not get to it first
                state.overrun_counted = True
                state.stats.overruns += 1
        if self.observer is not None:
            try:
                self.observer(state.job.name, duration, ok)
            except Exception:  # metrics never fail a job
                log.exception("job %s: observer failed", state.job.name)
        if late:
            log.warning(
                "job %s overran: %.1f s (timeout %g s)", state.job.name, duration,
                state.job.timeout,
            )  # fmt: skip

    def _overrun(self, state: _State, run_id: int) -> None:
        with self._stats_lock:
            if state.run_id != run_id or not state.stats.running or state.overrun_counted:
                return
            state.overrun_counted = True
            state.stats.overruns += 1
        log.warning(
            "job %s still running after its timeout of %g s", state.job.name, state.job.timeout
        )

    def _failed(self, state: _State, exc: Exception, started: float) -> None:
        job = state.job
        with self._stats_lock:
            state.stats.failures += 1
            state.stats.consecutive_failures += 1
            state.stats.last_error = _describe(exc)
        if isinstance(exc, (*job.expected, LeaseLostError)):
            log.warning("job %s failed: %s", job.name, _describe(exc))
        else:
            log.exception(
                "job %s failed after %.1f s; it runs again in %g s",
                job.name, time.monotonic() - started, job.wait,
            )  # fmt: skip

    def _release(self, job: Job, owner: str) -> None:
        assert job.lease is not None
        try:
            job.lease.release(job.lease_key, owner)
        except Exception as exc:  # it expires after `timeout` by itself
            log.warning("job %s: lease not released (%s); it expires", job.name, _describe(exc))


class _Renewer:
    """Renews one run's holding every third of its ttl on its own thread, until the run
    ends or reaches its job's timeout (a stuck run must not hold the lease for ever). A
    renewal refused marks the holding lost; one that fails (the store is away) is tried
    again at the next tick: if the lease lapses meanwhile, the fence decides at commit."""

    def __init__(self, job: Job, hold: LeaseHold) -> None:
        self._job = job
        self._hold = hold
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{job.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=5.0)

    def _loop(self) -> None:
        job, hold = self._job, self._hold
        assert job.lease is not None
        until = time.monotonic() + job.timeout
        while not self._done.wait(hold.ttl / 3):
            if time.monotonic() >= until:
                log.warning(
                    "job %s: past its timeout of %g s, its lease is no longer renewed",
                    job.name, job.timeout,
                )  # fmt: skip
                return
            try:
                asked = time.monotonic()
                if not job.lease.renew(hold.name, hold.owner, hold.token, hold.ttl):
                    hold.mark_lost()
                    log.warning("job %s: lost its lease to another process", job.name)
                    return
                hold.confirm(asked)
            except Exception as exc:
                log.warning("job %s: lease not renewed (%s); trying again", job.name,
                            _describe(exc))  # fmt: skip
