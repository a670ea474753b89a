"""VM intents carried out after the request that recorded them.

Create, start, stop and delete are intents (backend/vms.py records them with their money
in one transaction and answers at once). Carrying one out means calling the VM's host,
which may be slow, away or hostile, so no API request waits on it: a `Converger` (one per
backend process, a small pool of worker threads) tries each intent right after its
request, and the jobs `creates`, `starts`, `stops` and `deletes` try again, with
exponential backoff per VM (`converge_after`, `converge_attempts`), every one whose host
has not confirmed it. A kick that is lost (pool full, process killed) only delays the
intent until its job's next run; every try is idempotent on the host (same idempotency key
for a create; start/stop/delete of a VM already in that state are no-ops there).

Clients poll the VM, or ask the request to wait for the outcome (`Prefer: wait=N`,
RFC 7240): the request then watches the database, it never calls the host itself."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Literal, Protocol

from sqlalchemy import update
from sqlalchemy.orm import Session
from substrateinterface import Keypair

from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database
from kumulus.backend.models import VM
from kumulus.config import BackendSettings
from kumulus.core import request_ids
from kumulus.core.errors import KumulusError

if TYPE_CHECKING:
    from kumulus.backend.group_commit import GroupCommitter
    from kumulus.backend.metrics import BackendEvents
    from kumulus.backend.vms import PlaceRequest

log = logging.getLogger(__name__)

Action = Literal["create", "start", "stop", "delete"]

# A new intent is its worker's for this long (settings.converge_in_flight), renewed while
# the worker holds it, then the jobs'.
IN_FLIGHT = timedelta(seconds=30)
BACKOFF_MAX = 600.0
# Longest `Prefer: wait=N` honoured; longer waits are cut to this.
MAX_WAIT = 120.0
# A waiting request holds one of the process's request threads (40 for sync routes): at
# most this many wait at once, in all and per account; the others are answered at once
# (RFC 7240 lets a server ignore a preference), so a flood of waits on a host that holds
# its calls cannot take the threads heartbeats and everyone else need.
MAX_WAITING = 16
MAX_WAITING_PER_ACCOUNT = 2
_waiting_lock = threading.Lock()
_waiting: dict[int, int] = {}
HOST_AWAY = ("host_offline", "host_unreachable")


class Outcome(Enum):
    DONE = "done"  # the host confirmed (or nothing is pending any more)
    WAITING = "waiting"  # not yet: tried again after the VM's backoff
    HOST_AWAY = "host_away"  # its host is offline or silent: its other VMs can wait too


def backoff(attempts: int, first: float) -> timedelta:
    """Delay before the next try after `attempts` failed ones: `first` (the jobs'
    interval: their next run) doubling up to 10 min, with +-20% jitter so the VMs of a
    host that comes back are not all tried at once."""
    delay = min(first * 2 ** max(attempts - 1, 0), BACKOFF_MAX)
    return timedelta(seconds=delay * random.uniform(0.8, 1.2))  # noqa: S311 (not a secret)


class Intent(Protocol):
    """What recording a new intent sets: an ORM `VM`, or a plain row (placed_vms)."""

    converge_attempts: int
    converge_after: datetime | None


def mark_intent(vm: Intent, in_flight: timedelta = IN_FLIGHT, now: datetime | None = None) -> None:
    """A new intent (made at `now`, default now): its worker owns it for `in_flight`
    (settings.converge_in_flight; the worker's process renews that while it holds it),
    then the jobs (caller commits)."""
    vm.converge_attempts = 0
    vm.converge_after = (now or utcnow()) + in_flight


def _record(db: Session, vm_id: str, done: bool, first: float) -> None:
    if done:
        values: dict[str, object] = {"converge_attempts": 0, "converge_after": None}
    else:
        vm = db.get(VM, vm_id)
        attempts = (vm.converge_attempts if vm is not None else 0) + 1
        after = utcnow() + backoff(attempts, first)
        values = {"converge_attempts": attempts, "converge_after": after}
    db.execute(
        update(VM).where(VM.id == vm_id).values(values).execution_options(synchronize_session=False)
    )
    db.commit()


def converge(
    db: Session, act: Callable[[VM], bool], vm: VM, action: Action, first_backoff: float
) -> Outcome:
    """One try of `action` for `vm` with `act` (a VMService method that returns True once
    its host confirmed, raises the error family while it cannot), recording the VM's
    backoff (see `backoff`). Never raises for one VM's failure: the caller goes on with
    the others."""
    vm_id = vm.id
    try:
        done = act(vm)
    except KumulusError as exc:
        db.rollback()
        log.info("VM %s: %s not carried out yet: %s", vm_id, action, exc.detail)
        _record(db, vm_id, False, first_backoff)
        return Outcome.HOST_AWAY if exc.error_code in HOST_AWAY else Outcome.WAITING
    except Exception:
        db.rollback()
        log.exception("VM %s: %s failed; tried again later", vm_id, action)
        _record(db, vm_id, False, first_backoff)
        return Outcome.WAITING
    _record(db, vm_id, done, first_backoff)
    return Outcome.DONE if done else Outcome.WAITING


class Converger:
    """This process's workers for new intents (see the module docstring).

    Who drives a VM: a new intent's `converge_after` lies `in_flight` ahead, and the jobs
    take only VMs whose `converge_after` has passed. While this process holds the intent
    (queued or trying) a keeper thread pushes it `in_flight` ahead again every third of it,
    so a worker keeps its VM through agent calls of any length, and a killed process's
    intents pass to the jobs (of any replica) within `in_flight` after its last renewal.
    A worker starts its try only after renewing the claim itself, and only while the claim
    still stands: one that lapsed (this process stalled) may be the jobs' by now, so the
    worker leaves it to them. What the claim cannot stop: a try under way when a stall
    longer than `in_flight` let the jobs take its VM (every try is idempotent on the host)."""

    def __init__(
        self,
        db: Database,
        settings: BackendSettings,
        keypair: Keypair,
        workers: int = 8,
        placer: GroupCommitter[PlaceRequest, str] | None = None,
        events: BackendEvents | None = None,
    ) -> None:
        self._db, self._settings, self._keypair = db, settings, keypair
        self._placer, self._events = placer, events
        self._in_flight = timedelta(seconds=settings.converge_in_flight)
        self._pool = ThreadPoolExecutor(workers, "converge")
        # Bounded: under a burst the excess is left to the jobs instead of queueing
        # without end in memory.
        self._slots = threading.BoundedSemaphore(workers * 8)
        self._closed = False
        self._held: set[str] = set()  # VM ids whose intent this process holds
        self._held_lock = threading.Lock()
        self._stop = threading.Event()
        self._keeper = threading.Thread(target=self._keep, name="converge-keeper", daemon=True)
        self._keeper.start()

    def kick(self, vm_id: str, action: Action) -> None:
        """Try `action` for the VM now, in the background (its intent is committed)."""
        if self._closed or not self._slots.acquire(blocking=False):
            with self._db.session() as s:  # its job takes it at its next run
                s.execute(update(VM).where(VM.id == vm_id).values(converge_after=None))
                s.commit()
            return
        with self._held_lock:
            self._held.add(vm_id)
        try:
            # The request's id goes with the try, so the agent logs it too.
            self._pool.submit(self._run, vm_id, action, request_ids.current())
        except RuntimeError:  # shutting down
            self._let_go(vm_id)
            self._slots.release()

    def _run(self, vm_id: str, action: Action, request_id: str | None = None) -> None:
        from kumulus.backend.vms import VMService  # vms imports this module

        try:
            with request_ids.bound(request_id), self._db.session() as s:
                if not self._renew(s, [vm_id]):
                    log.info("VM %s: %s left to the jobs (its claim lapsed)", vm_id, action)
                    return
                vm = s.get(VM, vm_id)
                if vm is not None:
                    service = VMService(
                        s, self._settings, self._keypair, placer=self._placer, events=self._events
                    )
                    first = self._settings.maintenance_interval
                    converge(s, service.act(action), vm, action, first)
        except Exception:  # the database went away: the jobs try once the claim lapses
            log.exception("VM %s: %s could not be tried now", vm_id, action)
        finally:
            self._let_go(vm_id)
            self._slots.release()

    def _renew(self, s: Session, vm_ids: list[str]) -> int:
        """Push the claims on `vm_ids` that still stand `in_flight` ahead (commits); how
        many stood. A lapsed claim is not taken back: the jobs may be trying that VM."""
        now = utcnow()
        renewed = s.execute(
            update(VM)
            .where(VM.id.in_(vm_ids), VM.converge_after > now)
            .values(converge_after=now + self._in_flight)
            .execution_options(synchronize_session=False)
        )
        s.commit()
        return int(renewed.rowcount)  # type: ignore[attr-defined]

    def _let_go(self, vm_id: str) -> None:
        with self._held_lock:
            self._held.discard(vm_id)

    def _keep(self) -> None:
        period = self._in_flight.total_seconds() / 3
        while not self._stop.wait(period):
            with self._held_lock:
                held = sorted(self._held)
            if not held:
                continue
            try:
                with self._db.session() as s:
                    for start in range(0, len(held), 500):
                        self._renew(s, held[start : start + 500])
            except Exception:  # tried again next period; if the claims lapse, the jobs act
                log.warning("converge claims not renewed; trying again", exc_info=True)

    def close(self) -> None:
        self._closed = True
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)


def parse_wait(prefer: str | None) -> float:
    """Seconds the client is prepared to wait from an RFC 7240 `Prefer` header
    (`wait=N`; `respond-async` or no header: 0), at most MAX_WAIT."""
    if not prefer:
        return 0.0
    wait = 0.0
    for part in prefer.split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "respond-async":
            return 0.0
        if name.strip().lower() == "wait":
            try:
                wait = float(value.strip().strip('"'))
            except ValueError:
                continue  # an unknown form is ignored, as RFC 7240 asks
    if wait != wait or wait <= 0:  # NaN or nothing
        return 0.0
    return min(wait, MAX_WAIT)


@contextmanager
def _waiter(account_id: int) -> Iterator[bool]:
    """Whether this request may wait now (see MAX_WAITING); released on exit."""
    with _waiting_lock:
        mine = _waiting.get(account_id, 0)
        allowed = mine < MAX_WAITING_PER_ACCOUNT and sum(_waiting.values()) < MAX_WAITING
        if allowed:
            _waiting[account_id] = mine + 1
    try:
        yield allowed
    finally:
        if allowed:
            with _waiting_lock:
                _waiting[account_id] -= 1
                if not _waiting[account_id]:
                    del _waiting[account_id]


def wait_for(db: Session, vm: VM, done: Callable[[VM], bool], seconds: float) -> None:
    """Watch the VM until `done(vm)`, a failed try (its backoff began) or `seconds` pass;
    at once when too many requests wait already (MAX_WAITING)."""
    with _waiter(vm.account_id) as allowed:
        deadline = time.monotonic() + seconds
        while allowed and time.monotonic() < deadline:
            db.commit()  # a fresh snapshot each time (SQLite keeps one per transaction)
            db.refresh(vm)
            if done(vm) or vm.converge_attempts > 0:
                return
            time.sleep(0.2)
