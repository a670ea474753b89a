"""Placement: choose an online host that fits, and reserve its capacity atomically.

A placement is one statement: an UPDATE of the best fitting host, chosen by a sub-select
that walks the (reputation tier, reference price, load) index, guarded again by the
capacity condition and checked through RETURNING. On PostgreSQL the sub-select takes the
row lock with SKIP LOCKED, so concurrent placements pick different hosts instead of
queueing on one, and never wait for a lock: a plain FOR UPDATE under ORDER BY ... LIMIT
keeps the locks of rows that failed their re-check, so two placements could each hold the
row the other wants (a deadlock, seen in CI). When every fitting host is held, the placement
backs off and tries again. SQLite runs one writer at a time. Either way no host is ever
overcommitted, with any number of backend processes, and no lock is held while talking to
agents."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Float,
    String,
    and_,
    bindparam,
    case,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg
from sqlalchemy.orm import Session

from kumulus.backend.clock import utcnow
from kumulus.backend.db import driver_cursor
from kumulus.backend.models import Host
from kumulus.core.money import GIB, hourly_price
from kumulus.core.sizes import format_size

# PostgreSQL: how long to keep trying while fitting hosts exist but others hold them; each
# holder keeps its lock for one statement and a commit, so this is generous.
_RETRY_FOR = 5.0
_BACKOFF_MAX = 0.05


@dataclass(frozen=True)
class Want:
    cpu: float
    memory: int
    disk: int
    region: str | None = None
    max_price_hour: int | None = None  # planck per hour; None: any price
    # Hosts whose VMs are not fully isolated (backend/isolation.py) take the VM too.
    allow_weak: bool = False


@dataclass(frozen=True)
class Placement:
    """The host that took the VM and the unit prices the VM will pay there (planck/hour)."""

    host_id: str
    price_cpu_hour: int
    price_memory_gib_hour: int
    price_disk_gib_hour: int


class NoHostFitsError(Exception):
    """No online host can take the VM; the message says what is missing."""


class HostsBusyError(Exception):
    """Hosts that fit exist, but other transactions hold every one of them: trying again
    once they commit can succeed (`place_once`)."""


# Free capacity against the VM's size, written so that PostgreSQL's statistics on the free
# capacity expressions apply (migration 0025): with them it walks the index; without, it
# guessed few hosts fit and read and sorted the whole table (12 ms per placement).
_FITS = (
    "cpu - reserved_cpu >= :cpu - 0.000000001"
    " AND memory - reserved_memory >= :memory AND disk - reserved_disk >= :disk"
)
# The VM's exact hourly price on the host is at most :max_price. ceil(price) <= max exactly
# when price <= max (max is whole planck), and with everything multiplied by GiB that is
# integer arithmetic, but the products pass 64 bits: PostgreSQL computes them in NUMERIC
# (exact, any size; :cpu_exact is the cpu as the decimal it prints as), SQLite calls
# kumulus.core.money.hourly_price itself (registered by backend/db.py), the function every
# charge uses. (Floats here once let a VM be placed a few planck above its maximum.)
_PRICE_WITHIN = {
    "postgresql": (
        f"CAST(:cpu_exact AS NUMERIC) * price_cpu_hour * {GIB}"
        " + CAST(:memory AS NUMERIC) * price_memory_gib_hour"
        " + CAST(:disk AS NUMERIC) * price_disk_gib_hour"
        f" <= CAST(:max_price AS NUMERIC) * {GIB}"
    ),
    "sqlite": (
        "kumulus_price_within(:cpu_exact, :memory, :disk,"
        " price_cpu_hour, price_memory_gib_hour, price_disk_gib_hour, :max_price)"
    ),
}
# Its keys let it take VMs (backend/host_keys.schedulable): it signs with the wallet (set up
# before host keys), or with a host key the wallet delegated until later than now.
_KEYED = "(host_key_state = 'legacy' OR (host_key_state = 'delegated' AND delegated_until > :now))"
# Online, not draining, fits, in the region, under the price, isolated (unless the
# developer accepts less), not excluded: constant fragments only, every value is a bound
# parameter. The isolation test is a fragment rather than a parameter so the common
# statement filters on the column alone while it walks the index.
_WHERE = (
    " FROM hosts WHERE last_heartbeat_at >= :since AND NOT draining AND "
    + _KEYED
    + " AND "
    + _FITS
    + " AND (:region IS NULL OR region = :region)"
    " AND (:max_price IS NULL OR {price_within}){isolated}{exclude}"
)
# The order of preference: the best reputation tier, within it the host where THIS VM is
# cheapest, then the least loaded. Ranking by the stored reference price alone (the price of
# one reference shape, which the indexes hold) let a provider price only what the reference
# VM barely uses and win every memory-heavy VM at twice an honest host's price (found by an
# attacker review). Sorting every fitting host by the VM's own price is honest but slow (a
# scan and, on SQLite, the exact price function per host: 179 placements/s over 5,000
# hosts). So: the index walk picks a shortlist of the SHORTLIST best by reference price,
# and the VM's own price (floating point here, only to rank; the limit above is exact)
# decides within it. A host cheaper for this VM than all of the shortlist but outside it
# loses the VM; a host gaming the reference price wins only where it really is cheapest.
SHORTLIST = 64
_SHORTLIST = (
    "SELECT id, rep_tier, ref_price, load, price_cpu_hour, price_memory_gib_hour,"
    " price_disk_gib_hour" + _WHERE + f" ORDER BY rep_tier DESC, ref_price, load LIMIT {SHORTLIST}"
)
_RANK = (
    " ORDER BY rep_tier DESC,"
    " :cpu * price_cpu_hour + :memory_gib * price_memory_gib_hour"
    " + :disk_gib * price_disk_gib_hour,"
    " ref_price, load LIMIT 1"
)
_CANDIDATE = "SELECT id" + _WHERE
# The hosts a batch of placements chooses from (backend/batch_placement.py): what the index
# walk would pass through, with what the choice needs, locked as `place_once` locks its
# shortlist (skipping rows another transaction holds): concurrent batches choose among
# different hosts instead of queueing on the same ones.
_CANDIDATES = (
    "SELECT id, rep_tier, ref_price, load, cpu, memory, disk, reserved_cpu, reserved_memory,"
    " reserved_disk, price_cpu_hour, price_memory_gib_hour, price_disk_gib_hour"
    + _WHERE
    + " ORDER BY rep_tier DESC, ref_price, load LIMIT :limit{lock}"
)
# The best of the shortlist; on PostgreSQL one no other transaction holds. The lock covers
# the shortlist's rows too (a locking clause applies to a sub-select), so a batch of
# placements in one transaction (backend/group_commit.py) holds about its size plus the
# shortlist until it commits (consecutive shortlists overlap). Locking the chosen row
# alone through a join was tried: the planner then scanned the whole table (29 ms).
_CHOOSE = "SELECT id FROM (" + _SHORTLIST + ") AS shortlist" + _RANK + "{lock}"  # noqa: S608
_PLACE = (
    "UPDATE hosts SET"
    " reserved_cpu = reserved_cpu + :cpu,"
    " reserved_memory = reserved_memory + :memory,"
    " reserved_disk = reserved_disk + :disk,"
    " load = (reserved_cpu + :cpu) / cpu + (reserved_memory + :memory) * 1.0 / memory"
    " WHERE id = ({choose})"
    " AND " + _FITS + " RETURNING id, price_cpu_hour, price_memory_gib_hour, price_disk_gib_hour"
)
# What `place` would choose now, without reserving it.
_QUOTE = (
    "SELECT id, price_cpu_hour, price_memory_gib_hour, price_disk_gib_hour FROM ("  # noqa: S608
    + _SHORTLIST
    + ") AS shortlist"
    + _RANK
)
_TYPED = (
    bindparam("since", type_=DateTime(timezone=True)),
    bindparam("now", type_=DateTime(timezone=True)),
    bindparam("region", type_=String()),
    bindparam("cpu", type_=Float()),
    bindparam("cpu_exact", type_=String()),
    bindparam("memory", type_=BigInteger()),
    bindparam("disk", type_=BigInteger()),
    bindparam("max_price", type_=BigInteger()),
    bindparam("memory_gib", type_=Float()),
    bindparam("disk_gib", type_=Float()),
)
# NO KEY: a placement changes no key column of the host, and a plain FOR UPDATE also
# conflicts with the KEY SHARE lock that writing a VM row with this host id takes through
# its foreign key: placements skipped the hosts other transactions had just placed a VM on,
# and those transactions' VM rows waited for them.
_LOCKS = {"sqlite": "", "postgresql": " FOR NO KEY UPDATE SKIP LOCKED"}


def _compile(sql: str, dialect: str, exclude: bool, weak: bool):  # type: ignore[no-untyped-def]
    sql = sql.replace("{choose}", _CHOOSE).format(
        isolated="" if weak else " AND isolated",
        exclude=" AND id NOT IN :exclude" if exclude else "",
        lock=_LOCKS[dialect],
        price_within=_PRICE_WITHIN[dialect],
    )
    typed = tuple(p for p in _TYPED if f":{p.key}" in sql)
    params = (*typed, bindparam("exclude", expanding=True)) if exclude else typed
    return text(sql).bindparams(*params)


def _statements(sql: str):  # type: ignore[no-untyped-def]
    return {
        (dialect, exclude, weak): _compile(sql, dialect, exclude, weak)
        for dialect in _LOCKS
        for exclude in (False, True)
        for weak in (False, True)
    }


_PLACE_STATEMENTS = _statements(_PLACE)
# Is there a fitting host at all, held by another placement or not? Decides whether a retry
# can succeed.
_ANY_FITS_STATEMENTS = _statements(_CANDIDATE + " LIMIT 1")
_QUOTE_STATEMENTS = _statements(_QUOTE)
_CANDIDATES_STATEMENTS = _statements(_CANDIDATES)

# The candidates statement without exclusions as psycopg takes it (its placeholders, the
# bound values' types as casts): what `candidates` sends on the driver's cursor.
_PG_CANDIDATES = {
    weak: str(
        _CANDIDATES_STATEMENTS[("postgresql", False, weak)].compile(dialect=pg_psycopg.dialect())  # type: ignore[no-untyped-call]
    )
    for weak in (False, True)
}

_RELEASE = text(
    "UPDATE hosts SET"
    " reserved_cpu = reserved_cpu - :cpu,"
    " reserved_memory = reserved_memory - :memory,"
    " reserved_disk = reserved_disk - :disk,"
    " load = (reserved_cpu - :cpu) / cpu + (reserved_memory - :memory) * 1.0 / memory"
    " WHERE id = :id"
).bindparams(
    bindparam("cpu", type_=Float()),
    bindparam("memory", type_=BigInteger()),
    bindparam("disk", type_=BigInteger()),
)


_NO_SEQSCAN = text("SET LOCAL enable_seqscan = off")
_SEQSCAN_AS_CONFIGURED = text("RESET enable_seqscan")


def _walk_index(db: Session, statement: Any, params: dict[str, object]) -> Sequence[Any]:
    """The rows of a statement that walks the hosts' index in preference order. PostgreSQL
    cannot estimate how many hosts pass the fit test (free = capacity - reserved, over
    several columns): it guesses one row, for which reading the whole table and sorting
    looks cheapest, so every batch's candidates read all 5,000 hosts (4 ms; 40 ms at
    50,000) where the walk stops after the rows it needs (0.1 ms). Sequential scans are
    priced out for this statement alone (SET LOCAL, reset right after). A statement that
    fails is not followed by the reset: its transaction is aborted (another statement
    would only replace its error), and the rollback undoes the setting with the rest."""
    if _dialect(db) != "postgresql":
        return db.execute(statement, params).all()
    db.execute(_NO_SEQSCAN)
    rows = db.execute(statement, params).all()
    db.execute(_SEQSCAN_AS_CONFIGURED)
    return rows


def price_cap(want: Want, price_limit: int | None) -> int | None:
    """The most the VM may cost per hour: the user's maximum and the platform's limit."""
    caps = [c for c in (want.max_price_hour, price_limit) if c is not None]
    return min(caps) if caps else None


def _params(want: Want, exclude: set[str] | None, price_limit: int | None) -> dict[str, object]:
    params: dict[str, object] = {
        "cpu": want.cpu,
        "cpu_exact": str(want.cpu),  # how hourly_price reads it: the decimal it prints as
        "memory": want.memory,
        "disk": want.disk,
        "memory_gib": want.memory / GIB,  # for ranking only
        "disk_gib": want.disk / GIB,
        "region": want.region,
        "max_price": price_cap(want, price_limit),
    }
    if exclude:
        params["exclude"] = sorted(exclude)
    return params


def _dialect(db: Session) -> str:
    return "postgresql" if db.get_bind().dialect.name == "postgresql" else "sqlite"


def place(
    db: Session,
    want: Want,
    ttl: float,
    exclude: set[str] | None = None,
    money: Callable[[int], str] = str,
    price_limit: int | None = None,
    commit: bool = True,
) -> Placement:
    """Reserve `want` on the best online host that fits and commit (unless `commit` is
    False: then the reservation is part of the caller's transaction, which must commit or
    roll it back).

    Preference: the highest reputation tier, then the host in it where this VM is cheapest,
    then the least loaded (spreads VMs among equally priced hosts). A host where the VM
    would cost more than `price_limit` (planck per hour, the platform's
    `max_vm_price_per_hour`) does not fit: that bound caps what one VM can cost. Raises
    NoHostFitsError, whose message says what is missing (`money` formats prices in it)."""
    give_up = time.monotonic() + _RETRY_FOR
    for attempt in itertools.count():
        try:
            return place_once(db, want, ttl, exclude, money, price_limit, commit=commit)
        except HostsBusyError:
            if time.monotonic() >= give_up:
                break
        # Jittered so that the placements that collided do not collide again in step.
        time.sleep(random.uniform(0, min(_BACKOFF_MAX, 0.001 * 2**attempt)))  # noqa: S311
    raise NoHostFitsError(explain(db, want, ttl, exclude, money, price_limit))


def place_once(
    db: Session,
    want: Want,
    ttl: float,
    exclude: set[str] | None = None,
    money: Callable[[int], str] = str,
    price_limit: int | None = None,
    commit: bool = False,
) -> Placement:
    """One attempt of `place`, for callers that batch placements in one transaction
    (backend/group_commit.py): the reservation is part of the caller's transaction unless
    `commit`. Raises NoHostFitsError, or HostsBusyError when every fitting host is held by
    another transaction (PostgreSQL): the caller retries after its own commit, so that it
    never waits while holding the rows it placed on."""
    params = _params(want, exclude, price_limit)
    dialect = _dialect(db)
    now = utcnow()
    params["now"], params["since"] = now, now - timedelta(seconds=ttl)
    key = (dialect, bool(exclude), want.allow_weak)
    rows = _walk_index(db, _PLACE_STATEMENTS[key], params)
    row = rows[0] if rows else None
    if commit:
        db.commit()
    if row is not None:
        return Placement(str(row[0]), int(row[1]), int(row[2]), int(row[3]))
    if dialect == "postgresql":  # SQLite: one writer at a time, nothing was skipped
        # No order to walk: any fitting host will do, and the planner's own plan is best
        # (with sequential scans priced out it took 181 ms over 5,000 full hosts).
        fits = db.execute(_ANY_FITS_STATEMENTS[key], params).first()
        if commit:
            db.commit()
        if fits is not None:
            raise HostsBusyError("every fitting host is held by another placement")
    raise NoHostFitsError(explain(db, want, ttl, exclude, money, price_limit))


def release(db: Session, host_id: str, want: Want, commit: bool = True) -> None:
    """Give `want` back to the host's free capacity (always succeeds); commits unless told
    the caller's transaction goes on."""
    db.execute(_RELEASE, {"id": host_id, "cpu": want.cpu, "memory": want.memory, "disk": want.disk})
    if commit:
        db.commit()


def _online(want: Want, ttl: float, exclude: set[str] | None = None) -> ColumnElement[bool]:
    """Online hosts in the wanted region (not excluded), as a condition on Host."""
    now = utcnow()
    conditions = [
        Host.last_heartbeat_at >= now - timedelta(seconds=ttl),
        (Host.host_key_state == "legacy")
        | ((Host.host_key_state == "delegated") & (Host.delegated_until > now)),
    ]
    if want.region:
        conditions.append(Host.region == want.region)
    if exclude:
        conditions.append(Host.id.not_in(exclude))
    return and_(*conditions)


def explain(
    db: Session,
    want: Want,
    ttl: float,
    exclude: set[str] | None = None,
    money: Callable[[int], str] = str,
    price_limit: int | None = None,
) -> str:
    """Why nothing fits, in the user's terms.

    Counted by the database in one aggregate over the online hosts: a refusal is as cheap
    to ask for as a create, so it must not load every host (5,000 host rows took 0.23 s of
    the replica's time per refusal)."""
    online = _online(want, ttl, exclude)
    open_ = Host.draining.is_(False)
    eligible = open_ if want.allow_weak else and_(open_, Host.isolated.is_(True))
    fits = and_(
        eligible,
        Host.reserved_cpu + want.cpu <= Host.cpu + 1e-9,
        Host.reserved_memory + want.memory <= Host.memory,
        Host.reserved_disk + want.disk <= Host.disk,
    )

    def count(where: Any) -> Any:
        return func.coalesce(func.sum(case((where, 1), else_=0)), 0)

    n = db.execute(
        select(
            count(Host.draining.is_(True)).label("draining"),
            count(and_(open_, Host.isolated.is_(False))).label("weak"),
            count(eligible).label("eligible"),
            count(fits).label("fitting"),
            func.max(case((eligible, Host.cpu - Host.reserved_cpu))).label("free_cpu"),
            func.max(case((eligible, Host.memory - Host.reserved_memory))).label("free_mem"),
            func.max(case((eligible, Host.disk - Host.reserved_disk))).label("free_disk"),
        ).where(online)
    ).one()
    where = f" in region {want.region}" if want.region else ""
    if not n.eligible and (want.allow_weak or not n.weak):
        if n.draining:
            return (
                f"no provider fits: the {n.draining} host(s) online{where} are draining "
                "(their providers take no new VMs there for now)"
            )
        return f"no provider fits: no host is online{where}"
    if not n.eligible:
        return (
            f"no provider fits: {n.weak} host(s) online{where}, none fully isolates "
            "its VMs (userns-remap, firewall, disk quota); set allowWeakIsolation: true "
            "to accept such a host"
        )
    cap = price_cap(want, price_limit)
    if n.fitting and cap is not None:
        cheapest = _cheapest(db, want, and_(online, fits))
        if cheapest > cap:
            if price_limit is not None and cap == price_limit != want.max_price_hour:
                return (
                    f"no provider fits: {n.fitting} host(s) online{where} have room, but on "
                    f"each this VM would cost more than {money(price_limit)}/h, the most one "
                    f"VM may cost here (the cheapest: {money(cheapest)}/h); ask for a "
                    "smaller VM"
                )
            # The price the VM would be placed at without the developer's maximum: what
            # they have to accept (or wait for) to get it.
            now = quote(db, replace(want, max_price_hour=None), ttl, price_limit, exclude)
            current = (
                f"; the current price of this VM is {money(now.price_hour)}/h: raise "
                "maxPricePerHour to at least that to create it"
                if now is not None
                else ""
            )
            return (
                f"no provider fits: {n.fitting} host(s) online{where} have room, but none "
                f"under {money(cap)}/h; the cheapest costs {money(cheapest)}/h{current}"
            )
    if n.fitting:  # lost every race for the last capacity
        return f"no provider fits right now{where}: the hosts with room filled up; retry"
    free_cpu, free_mem, free_disk = float(n.free_cpu), int(n.free_mem), int(n.free_disk)
    short = []
    if want.cpu > free_cpu + 1e-9:
        short.append(f"{want.cpu:g} vCPU (largest free is {max(free_cpu, 0):g})")
    if want.memory > free_mem:
        short.append(
            f"{format_size(want.memory)} memory (largest free is {format_size(max(free_mem, 0))})"
        )
    if want.disk > free_disk:
        short.append(
            f"{format_size(want.disk)} disk (largest free is {format_size(max(free_disk, 0))})"
        )
    need = " and ".join(short) or "that combination of cpu, memory and disk"
    return f"no provider fits: {n.eligible} host(s) online{where}, none has {need} free"


def _cheapest(db: Session, want: Want, where: Any) -> int:
    """The lowest exact hourly price of `want` on the hosts `where` selects. The database
    orders them by an approximation of the price; the exact price (hourly_price's
    rounding) is computed for the first few."""
    approx = (
        Host.price_cpu_hour * want.cpu
        + Host.price_memory_gib_hour * (want.memory / GIB)
        + Host.price_disk_gib_hour * (want.disk / GIB)
    )
    rows = db.execute(
        select(Host.price_cpu_hour, Host.price_memory_gib_hour, Host.price_disk_gib_hour)
        .where(where)
        .order_by(approx)
        .limit(16)
    ).all()
    return min(
        hourly_price(want.cpu, want.memory, want.disk, cpu, memory, disk)
        for cpu, memory, disk in rows
    )


def candidates(
    db: Session, want: Want, ttl: float, exclude: set[str] | None, limit: int
) -> Sequence[tuple[Any, ...]]:
    """Up to `limit` hosts that `place_once` could choose for `want` (its price limit
    aside), in the order it walks them, as they are now. On PostgreSQL they are locked
    for the caller's transaction, and hosts another transaction holds are skipped (as
    `place_once` skips them). Columns: id, rep_tier, ref_price, load, cpu, memory, disk,
    reserved_cpu, reserved_memory, reserved_disk, price_cpu_hour, price_memory_gib_hour,
    price_disk_gib_hour (rows as tuples: read them by position)."""
    params = _params(replace(want, max_price_hour=None), exclude, None)
    now = utcnow()
    params["now"], params["since"], params["limit"] = now, now - timedelta(seconds=ttl), limit
    key = (_dialect(db), bool(exclude), want.allow_weak)
    if key[:2] == ("postgresql", False):
        # Every placement batch reads these: on the driver's cursor (db.driver_cursor),
        # as the statement compiles for it, with the same index walk.
        with driver_cursor(db) as cursor:
            cursor.execute(_NO_SEQSCAN.text)
            cursor.execute(_PG_CANDIDATES[want.allow_weak], params)
            rows: Sequence[tuple[Any, ...]] = cursor.fetchall()
            cursor.execute(_SEQSCAN_AS_CONFIGURED.text)
        return rows
    return _walk_index(db, _CANDIDATES_STATEMENTS[key], params)


@dataclass(frozen=True)
class Quote:
    """The host `place` would choose now and exactly what the VM would pay per hour there."""

    host_id: str
    price_hour: int  # planck
    price_cpu_hour: int
    price_memory_gib_hour: int
    price_disk_gib_hour: int


def quote(
    db: Session,
    want: Want,
    ttl: float,
    price_limit: int | None = None,
    exclude: set[str] | None = None,
) -> Quote | None:
    """The price of the host `place` would choose for `want` now (same predicate, same
    order), without reserving anything; None if no host would take it. Another placement
    may take that host first: the quote holds only as long as nothing changes, which is
    why clients send it back, with a tolerance, as `maxPricePerHour`."""
    params = _params(want, exclude, price_limit)
    now = utcnow()
    params["now"], params["since"] = now, now - timedelta(seconds=ttl)
    key = (_dialect(db), bool(exclude), want.allow_weak)
    rows = _walk_index(db, _QUOTE_STATEMENTS[key], params)
    if not rows:
        return None
    row = rows[0]
    prices = (int(row[1]), int(row[2]), int(row[3]))
    return Quote(
        str(row[0]),
        hourly_price(want.cpu, want.memory, want.disk, *prices),
        *prices,
    )
