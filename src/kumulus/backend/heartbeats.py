"""Storing signed heartbeats with group commit.

Request threads do the CPU work (sr25519 verification, parsing) and hand each verified
heartbeat to one writer thread per process. The writer stores everything that arrived while
its previous transaction was committing in one transaction: one host lookup, one heartbeat
insert and one host update (uptime included) per batch instead of per heartbeat. A
request is answered only after its batch committed, so an accepted heartbeat is never lost.

Replay protection: a heartbeat is stored only when it is signed later than the newest one
stored for its host (`hosts.heartbeat_signed_at`, set by the host update), as a Substrate
account's transactions carry increasing nonces; a replay, or an older envelope arriving
late, is refused. It holds across backend processes: the host update re-checks the time
under the row's lock, and a batch that lost a race for a host (another process stored a
newer heartbeat of it meanwhile) is rolled back and written again. Agents sign strictly
increasing times (agent/stats.py), even when their clock steps back."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Integer,
    String,
    any_,
    bindparam,
    delete,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.elements import BindParameter, ColumnElement, TextClause

from kumulus.backend import host_keys
from kumulus.backend.clock import aware, utcnow
from kumulus.backend.db import Database, upsert_insert
from kumulus.backend.hosts import capacity_problem, machine_reported
from kumulus.backend.models import VM, Heartbeat, Host, HostUptime
from kumulus.backend.vms import reconcile_inventory, record_disk_usage

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    ACCEPTED = "accepted"
    REPLAYED = "replayed"  # signed no later than the newest stored for its host: refused
    UNKNOWN_HOST = "unknown_host"  # no such host, or one that signs with another key
    REVOKED = "revoked"  # the host's key was revoked by its provider
    NOT_DELEGATED = "not_delegated"  # its key, but no standing delegation (host_keys.speaks)


@dataclass
class VerifiedHeartbeat:
    """A heartbeat whose signature and freshness were checked; whether it is new (signed
    later than the newest stored for its host) is decided by the writer."""

    address: str
    nonce: str
    signed_at: float
    host_id: str
    agent_version: str
    payload: dict[str, Any]
    inventory: dict[str, str] | None  # agent VM id -> docker state, when reported
    # The machine the agent runs on, as it reports it (`host`: cpuCount, memoryTotal,
    # diskTotal, ...), compared with the declared capacity (hosts.capacity_problem).
    machine: dict[str, Any] | None = None
    # From the signed isolation report (backend/isolation.py): no report is not isolated.
    isolated: bool = False
    isolation_problem: str | None = None
    agent_run: str | None = None  # the agent's run: a new one at each start
    engine_up: bool | None = None  # whether its container engine answered
    disk_usage: dict[str, int] = field(default_factory=dict)  # agent VM id -> bytes used
    # What `submit` answers with; made there (a Future makes a Condition: not for the
    # heartbeats that have a `waiter`).
    done: Future[Outcome] | None = None
    # Set by a caller on an event loop instead of waiting on `done` (`submit_waiting`):
    # resolved on its loop with one call per batch (`settle`), not one per heartbeat.
    waiter: asyncio.Future[Any] | None = None


NO_MACHINE_REPORT = (
    "its heartbeats do not report the machine's size (host.cpuCount, memoryTotal, diskTotal)"
)


def _update_host(inventory: bool) -> TextClause:
    """The host row's update after a batch: always liveness, version and isolation; the
    count of unknown containers when the heartbeat listed them; the capacity verdict (every
    heartbeat is judged: one without a machine report is flagged for that). A flagged
    host drops to tier 0 at once (`rep_tier * :keep_tier`, keep_tier 0 or 1); the
    reputation job keeps it there until the report agrees."""
    sets = (
        "last_heartbeat_at = :now, agent_version = :version,"
        " isolated = :isolated, isolation_problem = :isolation_problem"
    )
    params: list[BindParameter[Any]] = [
        bindparam("now", type_=DateTime(timezone=True)),
        bindparam("version", type_=String()),
        bindparam("isolated", type_=Boolean()),
        bindparam("isolation_problem", type_=String()),
    ]
    if inventory:
        sets += ", unknown_vms = :unknown"
        params.append(bindparam("unknown", type_=Integer()))
    sets += ", capacity_problem = :problem, rep_tier = rep_tier * :keep_tier"
    params += [bindparam("problem", type_=String()), bindparam("keep_tier", type_=Integer())]
    # SQLite has one writer at a time: the writer's own lookup decided which heartbeats
    # are new; the condition only keeps the stored time from going back.
    sets += ", heartbeat_signed_at = :last"
    params += [bindparam("last", type_=Float()), bindparam("first", type_=Float())]
    sets += ", agent_run = COALESCE(:run, agent_run), engine_up = COALESCE(:engine, engine_up)"
    params += [bindparam("run", type_=String()), bindparam("engine", type_=Boolean())]
    # The current hour's uptime: an older hour's was moved to host_uptime before.
    sets += (
        ", uptime_seconds = CASE WHEN uptime_hour = :hour THEN uptime_seconds ELSE 0 END"
        " + :credit, uptime_hour = :hour"
    )
    params += [bindparam("hour", type_=BigInteger()), bindparam("credit", type_=Float())]
    return text(
        f"UPDATE hosts SET {sets} WHERE id = :id"  # noqa: S608
        " AND (heartbeat_signed_at IS NULL OR heartbeat_signed_at < :first)"
    ).bindparams(*params)


_UPDATE_HOST = {i: _update_host(i) for i in (False, True)}


# PostgreSQL: each of the batch's writes is one statement over the batch's rows, passed as
# one JSON document (json.dumps in C, parsed by PostgreSQL in C), whatever the batch size:
# compiled and prepared once. Row by row (executemany), a heartbeat's insert, host update
# and uptime upsert cost ~0.5 ms of database time; as arrays, psycopg escaped every JSON
# payload in Python. Uptime is now part of the host update.
_INSERT_HEARTBEATS_PG = text(
    "INSERT INTO heartbeats (host_id, received_at, signed_at, payload)"
    " SELECT h, :now, s, p FROM json_to_recordset(CAST(:rows AS json))"
    " AS t(h varchar, s double precision, p json)"
).bindparams(bindparam("now", type_=DateTime(timezone=True)))
# The rows are locked in host id order first (a locking sub-select, sorted, runs before
# the update reads it): the order every replica's writer locks hosts in, so two batches
# sharing hosts queue on the first shared row instead of deadlocking.
# - `unknown` is null where the heartbeat listed no containers: the count stays as it was.
# - `first` and `last` are the signed times of the oldest and newest of the batch's
#   heartbeats for the host. A host whose stored time is no longer before `first` (another
#   process stored a newer heartbeat of it after this batch's lookup; seen under the row
#   lock, which re-reads the row) is left alone and not returned, and the writer writes
#   the batch again.
# - Each updated host is credited the time since its previous heartbeat as read under the
#   lock (`prev`), up to the TTL, in its current hour's uptime: two processes' batches for
#   one host never both credit the same gap (from the lookup, both credited all of it;
#   attack19). A host whose row still holds an earlier hour has that hour moved to
#   host_uptime by the same statement (`flushed`: once per host and hour; a separate
#   upsert per batch cost 15-21 µs of PostgreSQL time per heartbeat). The heartbeat
#   time never goes back (a batch that read the clock before another replica's but
#   committed after it would have the next heartbeat credited that gap again).
# - Both reads of `hosts` go by `= ANY(ARRAY(...))` so that they are primary-key lookups
#   whatever the planner knows: joined to the JSON rows, PostgreSQL scanned all of `hosts`
#   twice per batch whenever its statistics were stale (a batch's update took 6 ms among
#   6,000 hosts, 2 ms by key; it grows with the host count).
_UPDATE_HOSTS_PG = text(
    "WITH v AS (SELECT * FROM json_to_recordset(CAST(:rows AS json)) AS t(id varchar,"
    " version varchar, isolated boolean, isolation_problem varchar, unknown integer,"
    " problem varchar, keep_tier integer, first double precision, last double precision,"
    " run varchar, engine boolean)),"
    " locked AS (SELECT hosts.id, hosts.last_heartbeat_at AS prev,"
    " hosts.uptime_hour AS old_hour, hosts.uptime_seconds AS old_seconds FROM hosts"
    " WHERE hosts.id = ANY(ARRAY(SELECT v.id FROM v)) ORDER BY hosts.id"
    " FOR NO KEY UPDATE OF hosts),"
    " updated AS (UPDATE hosts SET last_heartbeat_at = GREATEST(locked.prev, :now),"
    " agent_version = v.version,"
    " isolated = v.isolated, isolation_problem = v.isolation_problem,"
    " unknown_vms = COALESCE(v.unknown, hosts.unknown_vms), capacity_problem = v.problem,"
    " rep_tier = hosts.rep_tier * v.keep_tier, heartbeat_signed_at = v.last,"
    " agent_run = COALESCE(v.run, hosts.agent_run),"
    " engine_up = COALESCE(v.engine, hosts.engine_up),"
    " uptime_seconds = CASE WHEN locked.old_hour = :hour THEN locked.old_seconds ELSE 0 END"
    " + LEAST(GREATEST(COALESCE(EXTRACT(EPOCH FROM :now - locked.prev), 0), 0), :ttl),"
    " uptime_hour = :hour"
    " FROM v JOIN locked ON locked.id = v.id"
    " WHERE hosts.id = v.id AND hosts.id = ANY(ARRAY(SELECT locked.id FROM locked))"
    " AND (hosts.heartbeat_signed_at IS NULL OR hosts.heartbeat_signed_at < v.first)"
    " RETURNING hosts.id, locked.old_hour, locked.old_seconds),"
    " flushed AS (INSERT INTO host_uptime (host_id, hour, up_seconds)"
    " SELECT id, old_hour, old_seconds FROM updated"
    " WHERE old_hour <> :hour AND old_seconds > 0 ORDER BY id"
    " ON CONFLICT (host_id, hour)"
    " DO UPDATE SET up_seconds = host_uptime.up_seconds + excluded.up_seconds)"
    " SELECT id FROM updated"
).bindparams(
    bindparam("now", type_=DateTime(timezone=True)),
    bindparam("hour", type_=BigInteger()),
    bindparam("ttl", type_=Float()),
)


# Writes of one batch before its heartbeats are answered with an error: each retry follows
# another process storing a newer heartbeat of one of its hosts in the meantime (a replay
# sent to two replicas at once, or an agent's retry racing its first try).
WRITE_TRIES = 5


class RaceLostError(RuntimeError):
    """A batch lost WRITE_TRIES races for its hosts in a row."""


def _among(
    s: Session, column: InstrumentedAttribute[Any], ids: Sequence[str]
) -> ColumnElement[bool]:
    """`column IN ids`, as one statement text on PostgreSQL (`= ANY(array)`): an expanding
    IN renders a new text for each batch size, which SQLAlchemy compiles and psycopg
    parses and prepares again (a quarter of the writer's CPU with batches of ~130)."""
    if s.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(ids), type_=ARRAY(String())))
    return column.in_(ids)


def hour_of(moment: datetime) -> int:
    """Hours since the epoch: the bucket uptime is summed in."""
    return int(moment.timestamp()) // 3600


def _resolve(
    done: Future[Outcome], outcome: Outcome | None = None, error: BaseException | None = None
) -> None:
    """Answer a heartbeat's waiter, unless it stopped waiting: the route awaits the future
    through `asyncio.wrap_future`, whose cancellation (its timeout) cancels this future, and
    resolving a cancelled future raises, which would end the writer's thread and with it
    every later heartbeat. The heartbeat itself was stored (or not) all the same."""
    with contextlib.suppress(InvalidStateError):
        if error is not None:
            done.set_exception(error)
        else:
            assert outcome is not None
            done.set_result(outcome)


# What a loop's waiter gets: (future, value, True when the value is the exception to raise).
Settlement = tuple["asyncio.Future[Any]", Any, bool]


def settle_on_loop(items: Sequence[Settlement]) -> None:
    """On the waiters' event loop: resolve them, skipping any whose request stopped
    waiting (its timeout cancelled it)."""
    for future, value, error in items:
        if future.done():
            continue
        if error:
            future.set_exception(value)
        else:
            future.set_result(value)


def settle(loop: asyncio.AbstractEventLoop, items: Sequence[Settlement]) -> None:
    """From any thread: resolve `items` on `loop` with one call into it. Each call from a
    thread wakes the loop through its self-pipe: one per heartbeat cost the loop about
    as much as the heartbeat's verification. A closed loop has nobody waiting."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(settle_on_loop, items)


def _answer(beats: Sequence[VerifiedHeartbeat], values: Sequence[Any], error: bool) -> None:
    """Answer each heartbeat with its value (an Outcome, or with `error` the exception):
    a waiter on a loop in one call per loop, a bare future at once."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Settlement]] = defaultdict(list)
    for beat, value in zip(beats, values, strict=True):
        if beat.waiter is not None:
            by_loop[beat.waiter.get_loop()].append((beat.waiter, value, error))
        elif beat.done is None:
            continue  # nobody waits for it
        elif error:
            _resolve(beat.done, error=value)
        else:
            _resolve(beat.done, value)
    for loop, items in by_loop.items():
        settle(loop, items)


class HeartbeatWriter:
    """Group-commit writer. `submit` returns a future that resolves to the `Outcome` once the
    heartbeat's batch committed (or raises if the database failed: nothing was stored); a
    heartbeat with a `waiter` has that resolved instead, on its loop."""

    def __init__(self, db: Database, ttl: float, max_batch: int = 500) -> None:
        self._db = db
        self._ttl = ttl  # a gap longer than this between heartbeats counts as downtime
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[VerifiedHeartbeat | None] = queue.SimpleQueue()
        self._connection: Connection | None = None
        self._thread = threading.Thread(target=self._run, name="heartbeat-writer", daemon=True)
        self._thread.start()
        self.batches = 0  # for tests and benchmarks: how many transactions were needed

    def submit(self, beat: VerifiedHeartbeat) -> Future[Outcome]:
        """Queue `beat`; its future resolves once its batch committed."""
        if beat.done is None:
            beat.done = Future()
        self.submit_waiting(beat)
        return beat.done

    def submit_waiting(self, beat: VerifiedHeartbeat) -> None:
        """Queue `beat`, whose `waiter` (or `done`) is resolved once its batch committed."""
        if not self._thread.is_alive():
            raise RuntimeError("heartbeat writer is stopped")
        self._queue.put(beat)

    def close(self, timeout: float = 10.0) -> None:
        """Store what is queued, then stop."""
        self._queue.put(None)
        self._thread.join(timeout)
        self._drop_connection()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._write_safely(batch)

    def _write_safely(self, batch: list[VerifiedHeartbeat]) -> None:
        try:
            outcomes = self._write(batch)
        except Exception:
            if len(batch) == 1:
                log.exception("storing a heartbeat failed")
                _answer(batch, [RuntimeError("the database refused the heartbeat")], error=True)
                return
            # One bad heartbeat (say, its host deleted meanwhile) must not fail the others.
            log.warning("a batch of %d heartbeats failed; storing them one by one", len(batch))
            for beat in batch:
                self._write_safely([beat])
            return
        self.batches += 1
        _answer(batch, outcomes, error=False)

    def _session(self) -> Session:
        """A session on the writer's own connection, kept across batches: no pool checkout
        and liveness ping per batch. Dropped after any failure, so the next batch starts
        on a fresh connection."""
        if self._connection is None or self._connection.closed:
            self._connection = self._db.engine.connect()
        return Session(bind=self._connection)

    def _drop_connection(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
        self._connection = None

    def _write(self, batch: Sequence[VerifiedHeartbeat]) -> list[Outcome]:
        try:
            for _ in range(WRITE_TRIES):
                now = utcnow()
                with self._session() as s:
                    outcomes = self._write_in(s, batch, now)
                    if outcomes is not None:
                        s.commit()
                        return outcomes
                    s.rollback()  # lost a race for a host: again, on what was stored
        except Exception:
            self._drop_connection()
            raise
        raise RaceLostError("another process kept storing these hosts' heartbeats first")

    def _write_in(
        self, s: Session, batch: Sequence[VerifiedHeartbeat], now: datetime
    ) -> list[Outcome] | None:
        """Store `batch` in `s` (not committed): each heartbeat's outcome, or None when
        another process stored a newer heartbeat of one of its hosts after the lookup
        (the caller rolls back and writes the batch again)."""
        host_ids = sorted({b.host_id for b in batch})
        rows = s.execute(
            select(
                Host.id,
                Host.wallet_address,
                Host.host_key,
                Host.host_key_state,
                Host.delegated_until,
                Host.last_heartbeat_at,
                Host.heartbeat_signed_at,
                Host.agent_run,
                Host.engine_up,
                Host.uptime_hour,
                Host.uptime_seconds,
                Host.cpu,
                Host.memory,
                Host.disk,
            ).where(_among(s, Host.id, host_ids))
        ).all()
        known = {row.id: row for row in rows}
        # The key each host signs with (backend/host_keys.signing_address, on bare rows).
        signers = {
            row.id: row.wallet_address if row.host_key_state == "legacy" else row.host_key
            for row in rows
            if row.host_key_state != "revoked"
        }
        heard = {
            row.id for row in rows if host_keys.speaks(row.host_key_state, row.delegated_until, now)
        }
        revoked = {row.id for row in rows if row.host_key_state == "revoked"}

        def outcome(b: VerifiedHeartbeat) -> Outcome:
            if signers.get(b.host_id) != b.address:
                return Outcome.REVOKED if b.host_id in revoked else Outcome.UNKNOWN_HOST
            return Outcome.ACCEPTED if b.host_id in heard else Outcome.NOT_DELEGATED

        outcomes = [outcome(b) for b in batch]
        # New: signed later than the newest stored for its host, and than the batch's
        # earlier ones for it (the same envelope twice in one batch: the first wins).
        newest = {row.id: row.heartbeat_signed_at for row in rows}
        accepted: list[VerifiedHeartbeat] = []
        owned = [i for i, o in enumerate(outcomes) if o is Outcome.ACCEPTED]
        for i in sorted(owned, key=lambda i: (batch[i].host_id, batch[i].signed_at)):
            last = newest[batch[i].host_id]
            if last is not None and batch[i].signed_at <= last:
                outcomes[i] = Outcome.REPLAYED
            else:
                newest[batch[i].host_id] = batch[i].signed_at
                accepted.append(batch[i])
        if accepted and not self._store(s, accepted, known, now):
            return None
        return outcomes

    def _store(
        self,
        s: Session,
        beats: list[VerifiedHeartbeat],
        known: dict[str, Any],
        now: datetime,
    ) -> bool:
        """Store `beats` (new ones, of hosts that own them; `known`: their hosts as the
        batch's lookup read them); False when the host update found a newer heartbeat
        stored for one of their hosts by another process."""
        postgres = s.get_bind().dialect.name == "postgresql"
        if postgres:
            s.execute(
                _INSERT_HEARTBEATS_PG,
                {
                    "now": now,
                    "rows": json.dumps(
                        [{"h": b.host_id, "s": b.signed_at, "p": b.payload} for b in beats]
                    ),
                },
            )
        else:
            s.execute(
                insert(Heartbeat),
                [
                    {
                        "host_id": b.host_id,
                        "received_at": now,
                        "signed_at": b.signed_at,
                        "payload": b.payload,
                    }
                    for b in beats
                ],
            )
        self._retry_returned(s, beats, known, now)
        unknown = self._reconcile(s, beats)
        latest: dict[str, VerifiedHeartbeat] = {}
        first: dict[str, float] = {}
        for b in beats:
            if b.host_id not in latest or b.signed_at >= latest[b.host_id].signed_at:
                latest[b.host_id] = b
            if b.host_id not in first or b.signed_at < first[b.host_id]:
                first[b.host_id] = b.signed_at
        hour = hour_of(now)
        updates: dict[bool, list[dict[str, Any]]] = defaultdict(list)
        for h, b in sorted(latest.items()):
            row: dict[str, Any] = {
                "id": h,
                "now": now,
                "hour": hour,
                "credit": self._credit(known[h].last_heartbeat_at, now),
                "version": b.agent_version[:32],
                "isolated": b.isolated,
                "isolation_problem": b.isolation_problem,
                "first": first[h],
                "last": b.signed_at,
                "run": b.agent_run,
                "engine": b.engine_up,
            }
            if h in unknown:
                row["unknown"] = unknown[h]
            # A heartbeat that says nothing usable about its machine is judged too: a liar
            # would otherwise just leave the report out.
            if b.machine is not None and machine_reported(b.machine):
                problem = capacity_problem(known[h].cpu, known[h].memory, known[h].disk, b.machine)
            else:
                problem = NO_MACHINE_REPORT
            row["problem"], row["keep_tier"] = problem, 0 if problem else 1
            updates[h in unknown].append(row)
        if postgres:
            rows = sorted(updates[False] + updates[True], key=lambda r: str(r["id"]))
            stored = s.execute(
                _UPDATE_HOSTS_PG,
                {
                    "now": now,
                    "hour": hour,
                    "ttl": self._ttl,
                    "rows": json.dumps(
                        [
                            {
                                "id": r["id"],
                                "version": r["version"],
                                "isolated": r["isolated"],
                                "isolation_problem": r["isolation_problem"],
                                "unknown": r.get("unknown"),
                                "problem": r["problem"],
                                "keep_tier": r["keep_tier"],
                                "first": r["first"],
                                "last": r["last"],
                                "run": r["run"],
                                "engine": r["engine"],
                            }
                            for r in rows
                        ]
                    ),
                },
            ).all()
            return len(stored) == len(rows)
        # SQLite: one writer at a time, the lookup is what is stored. An earlier hour's
        # uptime moves off the host row before the update starts the current one.
        self._flush_uptime(s, [known[h] for h in sorted(latest)], hour)
        for variant, rows in updates.items():
            # In host id order, as every replica's writer: two batches sharing hosts then
            # queue on the first shared row instead of deadlocking.
            s.execute(_UPDATE_HOST[variant], rows)
        return True

    def _credit(self, last: datetime | None, now: datetime) -> float:
        """The uptime a heartbeat at `now` earns after one at `last`: the time since, up to
        the TTL (a host heard every few seconds is up; silence longer than the TTL is
        downtime); nothing for a first heartbeat."""
        gap = 0.0 if last is None else (now - aware(last)).total_seconds()
        return max(0.0, min(gap, self._ttl))

    @staticmethod
    def _flush_uptime(s: Session, hosts: Sequence[Any], hour: int) -> None:
        """Move the uptime `hosts` (lookup rows) hold for an hour before `hour` to
        host_uptime (SQLite; PostgreSQL's host update does it in the same statement)."""
        rows = [
            {"h": h.id, "hour": h.uptime_hour, "up": h.uptime_seconds}
            for h in hosts
            if h.uptime_hour is not None and h.uptime_hour != hour and h.uptime_seconds > 0
        ]
        if not rows:
            return
        stmt = upsert_insert(s, HostUptime).values(
            host_id=bindparam("h", type_=String()),
            hour=bindparam("hour", type_=BigInteger()),
            up_seconds=bindparam("up", type_=Float()),
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[HostUptime.host_id, HostUptime.hour],
            set_={"up_seconds": HostUptime.up_seconds + stmt.excluded.up_seconds},
        )
        s.execute(stmt, rows)

    def _retry_returned(
        self,
        s: Session,
        beats: list[VerifiedHeartbeat],
        known: dict[str, Any],
        now: datetime,
    ) -> None:
        """A host heard from again after a silence longer than the TTL (a reboot, an
        outage), or whose agent or container engine came back (a new agent run, the
        engine answering again after a heartbeat said it did not: both can happen within
        the TTL), has its VMs' pending intents tried at the jobs' next run: their backoff
        (backend/converge.py) grew while it was away, up to 10 minutes, and would have kept
        its VMs waiting that long after it came back. Only VMs in backoff (attempts > 0):
        an intent its worker holds (attempts 0) stays that worker's."""

        def back(b: VerifiedHeartbeat) -> bool:
            host = known[b.host_id]
            last = host.last_heartbeat_at
            if last is None or (now - aware(last)).total_seconds() > self._ttl:
                return True
            run = host.agent_run
            new_run = b.agent_run is not None and run is not None and b.agent_run != run
            return new_run or (b.engine_up is True and host.engine_up is False)

        returned = sorted({b.host_id for b in beats if back(b)})
        if returned:
            s.execute(
                update(VM)
                .where(
                    _among(s, VM.host_id, returned),
                    VM.converge_attempts > 0,
                    VM.converge_after > now,
                )
                .values(converge_after=now, converge_attempts=0)
                .execution_options(synchronize_session=False)
            )

    @staticmethod
    def _reconcile(s: Session, beats: list[VerifiedHeartbeat]) -> dict[str, int]:
        """Apply reported VM inventories; returns unknown-container counts per host."""
        reported = {b.host_id: b for b in beats if b.inventory is not None}
        if not reported:
            return {}
        vms: dict[str, list[VM]] = defaultdict(list)
        for vm in s.scalars(
            select(VM).where(
                _among(s, VM.host_id, sorted(reported)),
                VM.agent_vm_id.is_not(None),
                VM.intended_state != "deleted",
            )
        ):
            vms[vm.host_id or ""].append(vm)
        unknown = {}
        for host_id, beat in reported.items():
            as_of = datetime.fromtimestamp(beat.signed_at, UTC)
            unknown[host_id] = reconcile_inventory(vms[host_id], beat.inventory or {}, as_of)
            record_disk_usage(vms[host_id], beat.disk_usage, as_of)
        return unknown


def prune_heartbeats(s: Session, keep: timedelta) -> int:
    """Drop heartbeats older than `keep` (the consoles chart the recent ones; uptime is
    kept per hour in host_uptime)."""
    result = s.execute(delete(Heartbeat).where(Heartbeat.received_at < utcnow() - keep))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
