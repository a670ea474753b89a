"""Placing a batch of VMs in one pass: one read of the candidate hosts per group of alike
VMs, the choices made in memory, one UPDATE for all the reservations.

The group-committed placer (backend/vms.place_vms, backend/group_commit.py) runs the
placements that arrived together in one transaction. Run one by one (scheduler.place_once),
each costs a statement that walks the host index, locks a shortlist and updates one row:
about 0.3 ms of database time and a round trip each, which capped placements at ~700/s on
this 2-core machine. Here a batch costs a read of SHORTLIST + n hosts per group of VMs that
share region, isolation and excluded hosts, and one UPDATE, whatever n is.

The choice is the one `place_once` makes, made in memory: for each VM in order, the
SHORTLIST best fitting hosts by (reputation tier, reference price, load), as the index walk
would give them with the batch's earlier reservations applied, then the cheapest for this
VM among them (same formula, same floating point), then the exact price limit
(core.money.hourly_price, the function every charge uses). A choice is only made in memory
when the hosts read are known to contain that shortlist: the read was not cut off by its
limit, or SHORTLIST fitting hosts precede the last host read. Otherwise (big VMs among
small ones, many hosts over the VM's price limit, an empty shortlist) that VM is placed by
`place_once` after the batch's reservations are written, which decides "busy" against "no
host fits" and explains the refusal.

On PostgreSQL the hosts read are locked as they are read, skipping those another
transaction holds (FOR NO KEY UPDATE SKIP LOCKED, as `place_once` locks its shortlist):
concurrent batches (other replicas') then choose among different hosts. Unlocked, every
replica's batch chose the same least loaded hosts, and each reservation waited for the
other batch's commit on those rows: a third of two placer processes' time (bench/scheduler)
went to that wait, and at three processes it cost more than the third one gave. A batch
never waits for a host row: what it locks it skips when taken, and what it then writes it
holds already.

Safety does not rest on the memory: the UPDATE re-checks every host's capacity, and all
else that makes it eligible (online, not draining, keyed, region, isolation, the prices
chosen at), against its current row, so a host that went offline since it was read gets
none: its VMs are placed again by `place_once`.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta

from sqlalchemy import DateTime, bindparam, text
from sqlalchemy.orm import Session

from kumulus.backend import scheduler
from kumulus.backend.clock import utcnow
from kumulus.backend.db import driver_cursor
from kumulus.backend.ledger import pg_json
from kumulus.backend.scheduler import (
    SHORTLIST,
    HostsBusyError,
    NoHostFitsError,
    Placement,
    Want,
)
from kumulus.core.money import GIB, hourly_price

Outcome = Placement | NoHostFitsError | HostsBusyError


@dataclass(slots=True, eq=False)  # hosts are compared by identity
class _Host:
    id: str
    rep_tier: int
    ref_price: int
    load: float
    cpu: float
    memory: int
    disk: int
    reserved_cpu: float
    reserved_memory: int
    reserved_disk: int
    price_cpu_hour: int
    price_memory_gib_hour: int
    price_disk_gib_hour: int
    # What is left, and the unit prices as one key: read once per VM for every host of
    # its shortlist (`_choose`), so kept rather than computed there.
    free_cpu: float = field(init=False)
    free_memory: int = field(init=False)
    free_disk: int = field(init=False)
    prices: tuple[int, int, int] = field(init=False)
    # The batch reserved room on it: its key is no longer the one the database gave.
    touched: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.prices = (self.price_cpu_hour, self.price_memory_gib_hour, self.price_disk_gib_hour)
        self._count_free()

    def _count_free(self) -> None:
        self.free_cpu = self.cpu - self.reserved_cpu
        self.free_memory = self.memory - self.reserved_memory
        self.free_disk = self.disk - self.reserved_disk

    def key(self) -> tuple[int, int, float]:
        """The index's order: best tier first, then reference price, then load."""
        return (-self.rep_tier, self.ref_price, self.load)

    def reserve(self, want: Want) -> None:
        """Take `want`'s room, as the reservation UPDATE will (the same arithmetic)."""
        self.touched = True
        self.reserved_cpu += want.cpu
        self.reserved_memory += want.memory
        self.reserved_disk += want.disk
        self._count_free()
        self.load = self.reserved_cpu / self.cpu + self.reserved_memory / self.memory


def _group_key(want: Want, exclude: frozenset[str]) -> tuple[str | None, bool, frozenset[str]]:
    """Wants that share the candidate read: same region, isolation and excluded hosts."""
    return (want.region, want.allow_weak, exclude)


def place_many(
    db: Session,
    wants: Sequence[Want],
    ttl: float,
    excludes: Sequence[frozenset[str]] | None = None,
    money: Callable[[int], str] = str,
    price_limit: int | None = None,
) -> list[Outcome]:
    """Reserve each of `wants` as `scheduler.place_once` would, one after the other, in the
    caller's transaction (which must commit or roll back). Per want: its Placement, or the
    NoHostFitsError / HostsBusyError place_once would raise (having reserved nothing).
    Any other exception leaves the transaction to be rolled back."""
    excludes = excludes if excludes is not None else [frozenset()] * len(wants)
    if len(wants) == 1:  # nothing to share
        return [_one(db, wants[0], ttl, excludes[0], money, price_limit)]
    groups: dict[tuple[str | None, bool, frozenset[str]], list[int]] = {}
    for index, (want, exclude) in enumerate(zip(wants, excludes, strict=True)):
        groups.setdefault(_group_key(want, exclude), []).append(index)
    # The hosts read so far, with the batch's choices applied: a group reading a host an
    # earlier group chose sees what is left of it.
    seen: dict[str, _Host] = {}
    planned: dict[int, Placement] = {}
    undecided: list[int] = []
    for indexes in groups.values():
        group = [wants[i] for i in indexes]
        chosen, left = _plan(db, group, ttl, excludes[indexes[0]], price_limit, seen)
        planned |= {indexes[n]: placement for n, placement in chosen.items()}
        undecided += [indexes[n] for n in left]
    # One UPDATE for the whole batch, on rows the candidate reads locked.
    reserved = _reserve(db, [(wants[i], placement) for i, placement in planned.items()], ttl)
    outcomes: dict[int, Outcome] = {}
    for i, placement in planned.items():
        if placement.host_id in reserved:
            outcomes[i] = placement
        else:  # another transaction took that host's room, or it stopped taking VMs
            undecided.append(i)
    for i in sorted(undecided):
        outcomes[i] = _one(db, wants[i], ttl, excludes[i], money, price_limit)
    return [outcomes[i] for i in range(len(wants))]


def _one(
    db: Session,
    want: Want,
    ttl: float,
    exclude: frozenset[str],
    money: Callable[[int], str],
    price_limit: int | None,
) -> Outcome:
    try:
        return scheduler.place_once(db, want, ttl, set(exclude), money, price_limit)
    except (NoHostFitsError, HostsBusyError) as exc:
        return exc


def _plan(
    db: Session,
    wants: list[Want],
    ttl: float,
    exclude: frozenset[str],
    price_limit: int | None,
    seen: dict[str, _Host],
) -> tuple[dict[int, Placement], list[int]]:
    """Choose hosts in memory for the wants that share one candidate read (same region,
    isolation, exclusions); `seen` holds the hosts earlier groups read, as they left them,
    and gets this group's. Returns the placements made (by position in `wants`) and the
    positions left to `place_once`, in order."""
    limit = SHORTLIST + len(wants)
    # A host read must fit the smallest of each resource asked: every VM of the batch can
    # only use hosts that do.
    smallest = replace(
        wants[0],
        cpu=min(w.cpu for w in wants),
        memory=min(w.memory for w in wants),
        disk=min(w.disk for w in wants),
    )
    rows = scheduler.candidates(db, smallest, ttl, set(exclude), limit)
    hosts = []
    for row in rows:
        host = seen.get(row[0])
        if host is None:  # the columns are _Host's fields, in order
            host = seen[row[0]] = _Host(*row)
        hosts.append(host)
    # Hosts past the last one read may precede a host read whose load grew: up to the
    # boundary (the last row as the database has it), what was read is exactly what the
    # index walk would give.
    last = rows[-1] if rows else None  # id, rep_tier, ref_price, load, ...
    boundary = (-last[1], last[2], last[3]) if last is not None and len(rows) == limit else None
    order = sorted(hosts, key=_Host.key)
    keys = [h.key() for h in order]
    planned: dict[int, Placement] = {}
    undecided: list[int] = []
    # Per VM size and price cap (the VMs of a batch mostly share a few): see _Class.
    classes: dict[tuple[float, int, int, int | None], _Class] = {}
    for n, want in enumerate(wants):
        cap = scheduler.price_cap(want, price_limit)
        kind = classes.get((want.cpu, want.memory, want.disk, cap))
        if kind is None:
            kind = classes[(want.cpu, want.memory, want.disk, cap)] = _Class(want, cap, order)
        chosen = _choose(order, want, boundary, kind)
        if chosen is None:
            undecided.append(n)
            continue
        at = order.index(chosen)
        del order[at], keys[at]
        for other in classes.values():
            other.touch(chosen)
        chosen.reserve(want)
        at = bisect.bisect_right(keys, chosen.key())
        order.insert(at, chosen)
        keys.insert(at, chosen.key())
        planned[n] = Placement(
            chosen.id,
            chosen.price_cpu_hour,
            chosen.price_memory_gib_hour,
            chosen.price_disk_gib_hour,
        )
    return planned, undecided


class _Class:
    """What `_choose` keeps for the VMs of one size and price cap in one candidate read.

    `priced`: the VM's price at each price triple seen (None: over the cap); `floor`: the
    lowest of them over every host read; `untouched`: how many hosts read fit such a VM
    within the cap and have had nothing reserved by this batch yet, by this group or an
    earlier one (their order keys are still the ones the database gave, none past the
    read's boundary)."""

    __slots__ = ("fits", "floor", "priced", "untouched")

    def __init__(self, want: Want, cap: int | None, hosts: list[_Host]) -> None:
        self.priced: dict[tuple[int, int, int], float | None] = {}
        for triple in {host.prices for host in hosts}:
            self.priced[triple] = _price(want, triple, cap)
        within = [price for price in self.priced.values() if price is not None]
        self.floor = min(within) if within else None
        cpu, memory, disk = want.cpu - 0.000000001, want.memory, want.disk
        self.fits = {
            id(host)
            for host in hosts
            if not host.touched
            and host.free_cpu >= cpu
            and host.free_memory >= memory
            and host.free_disk >= disk
            and self.priced[host.prices] is not None
        }
        self.untouched = len(self.fits)

    def touch(self, host: _Host) -> None:
        """`host` is about to have room reserved: it no longer counts as untouched."""
        if id(host) in self.fits:
            self.fits.discard(id(host))
            self.untouched -= 1


def _choose(
    order: list[_Host], want: Want, boundary: tuple[int, int, float] | None, kind: _Class
) -> _Host | None:
    """The host `place_once` would choose for `want` among `order` (sorted by the index
    key), or None when what was read cannot tell (the VM goes to place_once). `kind`: the
    VM's size and price cap, for every host read (`_Class`).

    The first SHORTLIST hosts that fit and are within the cap form the shortlist; the
    choice is its best by (tier, this VM's price, reference price, load). `order` is by
    (tier, reference price, load), so that is the first host, of the shortlist's best tier
    (its first host's), at the lowest price: one pass, no key built per host.

    The pass stops early when it can: at a host priced at the floor (no later host is
    cheaper, so the choice is made) if at least SHORTLIST hosts read fit and are untouched
    by the batch. The shortlist then lies within what was read, whatever comes after: its
    last host precedes, or is, the SHORTLIST-th untouched one, whose key is one the
    database gave, at most the boundary's. Otherwise the pass goes on to the shortlist's
    end, whose last host tells whether the read covered it."""
    cpu, memory, disk = want.cpu - 0.000000001, want.memory, want.disk
    priced, floor = kind.priced, kind.floor
    covered = boundary is None or kind.untouched >= SHORTLIST
    best: _Host | None = None
    best_price = 0.0
    last: _Host | None = None
    found = 0
    for host in order:
        # The same comparisons as scheduler._FITS.
        if host.free_cpu < cpu or host.free_memory < memory or host.free_disk < disk:
            continue
        price = priced[host.prices]
        if price is None:
            continue  # over the cap: not on the shortlist
        if best is None or (host.rep_tier == best.rep_tier and price < best_price):
            best, best_price = host, price
            if covered and price == floor:
                return best
        last = host
        found += 1
        if found == SHORTLIST:
            break
    if best is None or last is None:
        return None  # nothing here: place_once tells busy from full and explains
    if boundary is not None and (found < SHORTLIST or last.key() > boundary):
        return None  # the shortlist may go on past what was read
    return best


def _price(want: Want, triple: tuple[int, int, int], cap: int | None) -> float | None:
    """The VM's price at these unit prices as the database ranks hosts by it (floating
    point, the same formula), or None when its exact price (core.money.hourly_price, what
    every charge uses) is over `cap`."""
    if cap is not None and hourly_price(want.cpu, want.memory, want.disk, *triple) > cap:
        return None
    return want.cpu * triple[0] + want.memory / GIB * triple[1] + want.disk / GIB * triple[2]


# The batch's reservations as rows (one JSON document: one statement text, prepared once,
# whatever the batch's size), and the UPDATE that applies them where the host still takes
# them (see _reserve). The statement starts with UPDATE, not WITH: Python's sqlite3 opens
# a transaction before a statement only when it starts with INSERT, UPDATE, DELETE or
# REPLACE, and would have committed the reservations at once, outside the caller's.
# PostgreSQL runs it on the driver's cursor (db.driver_cursor: psycopg's placeholders).
_ROWS = {
    "postgresql": (
        "SELECT * FROM json_to_recordset(CAST(%(rows)s AS json)) AS t(id varchar,"
        " cpu double precision, memory bigint, disk bigint, pc bigint, pm bigint,"
        " pd bigint, region varchar, isolated boolean)"
    ),
    "sqlite": (
        "SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.cpu') AS cpu,"
        " json_extract(value, '$.memory') AS memory, json_extract(value, '$.disk') AS disk,"
        " json_extract(value, '$.pc') AS pc, json_extract(value, '$.pm') AS pm,"
        " json_extract(value, '$.pd') AS pd, json_extract(value, '$.region') AS region,"
        " json_extract(value, '$.isolated') AS isolated FROM json_each(:rows)"
    ),
}
# PostgreSQL: the hosts' ids as an array give the planner an index condition (joined on
# the JSON rows alone it read the whole table: 5,000 rows, 7 ms). Their rows are this
# transaction's already (the candidate read locked them), so the UPDATE waits for nobody.
_BY_ID = {
    "postgresql": " AND hosts.id = ANY(CAST(%(ids)s AS varchar[]))",
    "sqlite": "",  # one writer at a time
}
_NOW = {"postgresql": ("%(now)s", "%(since)s"), "sqlite": (":now", ":since")}
_RESERVE_SQL = {
    dialect: "UPDATE hosts SET"
    " reserved_cpu = hosts.reserved_cpu + v.cpu,"
    " reserved_memory = hosts.reserved_memory + v.memory,"
    " reserved_disk = hosts.reserved_disk + v.disk,"
    " load = (hosts.reserved_cpu + v.cpu) / hosts.cpu"
    " + (hosts.reserved_memory + v.memory) * 1.0 / hosts.memory"
    " FROM (" + rows + ") AS v WHERE hosts.id = v.id" + _BY_ID[dialect] + ""
    " AND hosts.cpu - hosts.reserved_cpu >= v.cpu - 0.000000001"
    " AND hosts.memory - hosts.reserved_memory >= v.memory"
    " AND hosts.disk - hosts.reserved_disk >= v.disk"
    f" AND hosts.last_heartbeat_at >= {_NOW[dialect][1]} AND NOT hosts.draining"
    " AND (hosts.host_key_state = 'legacy'"
    f" OR (hosts.host_key_state = 'delegated' AND hosts.delegated_until > {_NOW[dialect][0]}))"
    " AND (v.region IS NULL OR hosts.region = v.region)"
    " AND (hosts.isolated OR NOT v.isolated)"
    " AND hosts.price_cpu_hour = v.pc AND hosts.price_memory_gib_hour = v.pm"
    " AND hosts.price_disk_gib_hour = v.pd"
    " RETURNING hosts.id"
    for dialect, rows in _ROWS.items()
}
_SQLITE_RESERVE = text(_RESERVE_SQL["sqlite"]).bindparams(
    bindparam("now", type_=DateTime(timezone=True)),
    bindparam("since", type_=DateTime(timezone=True)),
)


@dataclass
class _Reservation:
    """What a batch reserves on one host, and what its VMs need of the host."""

    placement: Placement  # the prices the VMs were placed at
    cpu: float = 0.0
    memory: int = 0
    disk: int = 0
    region: str | None = None  # what some VM there asked for (one host: one region)
    isolated: bool = False  # some VM there needs isolation


def _reserve(db: Session, planned: list[tuple[Want, Placement]], ttl: float) -> set[str]:
    """Write the planned reservations in one UPDATE, each host checked again against its
    current row: its capacity, and that it still takes these VMs (online, not draining,
    keyed, in the region asked, isolated unless every VM there allows less, at the prices
    the choice was made at), all of which `place_once` checks in the statement that
    reserves. Returns the hosts reserved on: a host that stopped being eligible since it
    was read (or whose room is gone, which its row lock rules out on PostgreSQL) is left
    as it was, with none of its VMs. The hosts must be ones `scheduler.candidates` read in
    this transaction: on PostgreSQL their rows are locked already."""
    if not planned:
        return set()
    totals: dict[str, _Reservation] = {}
    for want, placement in planned:
        total = totals.setdefault(placement.host_id, _Reservation(placement))
        total.cpu += want.cpu
        total.memory += want.memory
        total.disk += want.disk
        total.region = total.region or want.region
        total.isolated = total.isolated or not want.allow_weak
    now = utcnow()
    ordered = sorted(totals.items())
    rows = pg_json(
        [
            {
                "id": host_id,
                "cpu": t.cpu,
                "memory": t.memory,
                "disk": t.disk,
                "pc": t.placement.price_cpu_hour,
                "pm": t.placement.price_memory_gib_hour,
                "pd": t.placement.price_disk_gib_hour,
                "region": t.region,
                "isolated": t.isolated,
            }
            for host_id, t in ordered
        ]
    )
    params: dict[str, object] = {"now": now, "since": now - timedelta(seconds=ttl), "rows": rows}
    if db.get_bind().dialect.name != "postgresql":
        return set(db.execute(_SQLITE_RESERVE, params).scalars().all())
    params["ids"] = [host_id for host_id, _ in ordered]
    with driver_cursor(db) as cursor:
        cursor.execute(_RESERVE_SQL["postgresql"], params)
        return {host_id for (host_id,) in cursor.fetchall()}
