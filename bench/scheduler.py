"""VM placements per second over 5,000 simulated hosts, by the backend's own placer, with
hosts filled to the last VM that fits: zero overcommit, no lost capacity, clean refusals.

Each placement is what a create's placement costs in the database: `backend/vms.place_vms`
on a VM row of a funded developer (the VM's balances locked with the batch's, the hosts
read and reserved by `batch_placement.place_many`, the VM's prepaid hold posted to the
ledger, the VM row updated), as the app runs it. Two ways, same hosts, same run:

- one transaction and commit per placement, from `--threads` callers (VMService without a
  placer: `place_vms` on one request, commit, RETRY after a jittered sleep);
- group-committed: `--clients` placements in flight at the app's placer
  (`vms.placer`, a GroupCommitter running `place_vms` on what arrived together, one
  commit per batch); each finishes once its batch is committed;
- the same in `--processes` processes at once (default 2), each with its own placer and
  `--clients` in flight, on the same hosts: N backend replicas placing together.

Each way also reports the CPU time the whole machine spent per placement (database
included): on this 2-core machine, 3,750 placements/s leaves at most 533 us per placement,
and only if both cores are busy all the time.

Not in the figure: the HTTP request, its authentication and body validation, the VM row's
own INSERT + COMMIT that `VMService.create` makes before asking the placer (made here
before the clock starts, one multi-row INSERT), the DELETE of a refused VM's row, and the
call to the host's agent (the converger's, after the request has returned).

Capacity is tight by default: 5,000 hosts of 8 vCPU / 32 GiB / 500 GiB each take two VMs of
3 vCPU / 12 GiB / 200 GiB (the third fits no resource), 10,000 in all, and 10,100 are asked
for: the tail is refused while every host still has 2 vCPU, 8 GiB and 100 GiB free. After
each way the bench checks, on every host, that cpu, memory and disk reserved are within
its capacity and equal the sum of the VMs placed on it; that the VMs placed are exactly
as many as the hosts can take (min of asked and capacity: no capacity lost); that every
refusal is a clean `no_host_fits` ConflictError (no host, no reservation, no hold left);
and that each placed VM holds its full prepaid hold. Any failure: exit status 1.

Rates: placements per s from the start to the last placement (filling the hosts), and the
refused tail apart (refusals per s from the first one): a refusal runs
`scheduler.explain`, which loads every online host to say what is missing, so over 5,000
hosts it costs far more than a placement and would otherwise swamp the figure.

Baseline, same database, same run: bare one-row INSERT + COMMIT transactions: one commit
per placement cannot beat it; group commit can. Target: >= 3,750/s on PostgreSQL
(Nomad's C1M rate on 5 servers), i.e. about 2.2x the baseline of an idle 2-core machine
(1,730/s when the target was set); on a slower or loaded machine compare the ratio. On
PostgreSQL the bench works in a scratch schema `bench_<time>_<hex>` (dropped afterwards).

    python -m bench.scheduler [--hosts 5000] [--placements 10100] [--threads 2]
                              [--clients 128] [--processes 2] [--developers 500]
                              [--database-url URL] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, text, update

from bench.common import (
    GIB,
    add_funded_developers,
    add_hosts,
    fresh_schema,
    insert_commit_rate,
    machine_busy_seconds,
    results_of,
)
from kumulus.backend import billing, ledger, vms
from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database, migrate
from kumulus.backend.group_commit import GroupCommitter
from kumulus.backend.models import VM, Balance, Host
from kumulus.backend.vms import PlaceRequest, place_vms
from kumulus.config import BackendSettings
from kumulus.core.errors import ConflictError
from kumulus.core.money import hourly_price

# Host prices (planck per unit-hour, 12 decimals): every placement takes a real hold.
PRICES = {
    "price_cpu_hour": 10**12 // 100,  # 0.01 per vCPU-hour
    "price_memory_gib_hour": 10**12 // 200,  # 0.005 per GiB-hour
    "price_disk_gib_hour": 10**12 // 10_000,  # 0.0001 per GiB-hour
}
FUNDS = 1000 * 10**12  # each developer's deposit: far more than its VMs' holds
# The hosts beat once, when made: a long TTL keeps them online for the whole run.
TTL = 3600.0


@dataclass(frozen=True)
class Size:
    cpu: float
    memory: int
    disk: int


@dataclass
class Outcomes:
    """What the placements of one way ended with."""

    placed: int = 0
    refused: int = 0  # clean no_host_fits ConflictErrors
    other: list[str] = field(default_factory=list)  # anything else: a failure
    start: float = field(default_factory=time.perf_counter)
    last_placed: float = 0.0  # when the last placement finished
    first_refused: float = 0.0  # when the first refusal finished
    end: float = 0.0

    busy: float = 0.0  # CPU seconds of the whole machine during the way

    @classmethod
    def merged(cls, parts: list[Outcomes]) -> Outcomes:
        """The outcomes of placers that ran at once (perf_counter is the machine's
        monotonic clock: comparable between processes)."""
        return cls(
            placed=sum(p.placed for p in parts),
            refused=sum(p.refused for p in parts),
            other=[e for p in parts for e in p.other],
            start=min(p.start for p in parts),
            last_placed=max(p.last_placed for p in parts),
            first_refused=min((p.first_refused for p in parts if p.first_refused), default=0.0),
            end=max(p.end for p in parts),
        )

    def add(self, error: BaseException | None) -> None:
        now = time.perf_counter()
        if error is None:
            self.placed += 1
            self.last_placed = now
        elif isinstance(error, ConflictError) and error.error_code == "no_host_fits":
            self.refused += 1
            self.first_refused = self.first_refused or now
        else:
            self.other.append(repr(error))
        self.end = now

    def rates(self) -> dict[str, float]:
        """Placements per s until the last one finished (what filling the hosts cost);
        refusals per s from the first refusal on (the refused tail: each refusal explains
        itself, `scheduler.explain`); all outcomes per s over the whole run."""
        placing = self.last_placed - self.start
        refusing = self.end - self.first_refused
        return {
            "placements_per_s": round(self.placed / placing, 1) if placing > 0 else 0.0,
            "refusals_per_s": round(self.refused / refusing, 1) if refusing > 0 else 0.0,
            "outcomes_per_s": round((self.placed + self.refused) / (self.end - self.start), 1),
            "seconds": round(self.end - self.start, 2),
            "machine_cpu_us_per_outcome": round(
                self.busy / max(self.placed + self.refused, 1) * 1e6
            ),
        }


def populate(
    db: Database, suffix: str, host_ids: list[str], developers: int, size: Size, vm_count: int
) -> list[str]:
    """The hosts (priced), `developers` funded developer accounts (a deposit from the
    chain, `ledger.transfer`), and `vm_count` unplaced VM rows of `size` owned by them in
    turn, as `VMService.create` leaves them before placing. Returns the VM ids."""
    add_hosts(db, suffix, host_ids, lambda _: "w", online=True)
    now = utcnow()
    with db.session() as s:
        s.execute(update(Host).where(Host.id.in_(host_ids)).values(**PRICES))
        dev_ids = add_funded_developers(s, suffix, developers, FUNDS)
        vm_ids = [f"v{suffix}{i:07d}" for i in range(vm_count)]
        for start in range(0, vm_count, 2000):
            s.execute(
                insert(VM),
                [
                    {
                        "id": vm_id,
                        "account_id": dev_ids[(start + n) % developers],
                        "name": f"vm{start + n}",
                        "username": "dev",
                        "ssh_key": "ssh-ed25519 AAAA",
                        "cpu": size.cpu,
                        "memory": size.memory,
                        "disk": size.disk,
                        "region": "",
                        "intended_state": "running",
                        "actual_state": "pending",
                        "reserved": False,
                        "allow_weak_isolation": False,
                        "created_at": now,
                        "updated_at": now,
                    }
                    for n, vm_id in enumerate(vm_ids[start : start + 2000])
                ],
            )
        s.commit()
    return vm_ids


def place_requests(db: Database, vm_ids: list[str]) -> list[PlaceRequest]:
    """A placement request per VM, with its owner (read before the clock starts: a create
    request knows its developer, VMService passes the VM's)."""
    with db.session() as s:
        rows = s.execute(select(VM.id, VM.account_id).where(VM.id.in_(vm_ids)))
        owner = {vm_id: account_id for vm_id, account_id in rows}
    return [PlaceRequest(vm_id, owner[vm_id], frozenset()) for vm_id in vm_ids]


def one_commit_each(
    db: Database, settings: BackendSettings, requests: list[PlaceRequest], threads: int
) -> Outcomes:
    """Place the VMs from `threads` callers, one transaction and commit each, as
    VMService does without a placer."""
    outcomes = Outcomes()
    lock = threading.Lock()

    def worker(mine: list[PlaceRequest]) -> None:
        with db.session() as s:
            for request in mine:
                give_up = time.monotonic() + vms.RETRY_PLACEMENT_FOR
                error: BaseException | None = None
                for attempt in range(1_000_000):
                    last = time.monotonic() >= give_up
                    outcome = place_vms(settings, s, [request], [last])[0]
                    if isinstance(outcome, str):
                        s.commit()
                        break
                    s.rollback()
                    if isinstance(outcome, BaseException):
                        error = outcome
                        break
                    time.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))
                with lock:
                    outcomes.add(error)

    shares = [requests[k::threads] for k in range(threads)]
    busy = machine_busy_seconds()
    outcomes.start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, shares))
    outcomes.busy = machine_busy_seconds() - busy
    return outcomes


def in_flight_run(
    committer: GroupCommitter[PlaceRequest, str], requests: list[PlaceRequest], in_flight: int
) -> Outcomes:
    """Place the VMs keeping `in_flight` placements outstanding at the placer: each one
    that finishes submits the next, as that many concurrent create requests would. (Driven
    by the futures' callbacks rather than `in_flight` waiting threads: waking a thread per
    placement cost this process more than the placements, and a backend's requests wait on
    its event loop, not on threads.)"""
    lock = threading.Lock()
    done = threading.Event()
    outcomes = Outcomes()
    pending: Iterator[PlaceRequest] = iter(requests)
    state = {"finished": 0}

    def next_one(finished: Future[str] | None = None) -> None:
        with lock:
            if finished is not None:
                outcomes.add(finished.exception())
                state["finished"] += 1
                if state["finished"] == len(requests):
                    done.set()
            request = next(pending, None)
        if request is not None:
            committer.submit(request).add_done_callback(next_one)

    busy = machine_busy_seconds()
    outcomes.start = time.perf_counter()
    for _ in range(min(in_flight, len(requests))):
        next_one()
    done.wait()
    outcomes.busy = machine_busy_seconds() - busy
    return outcomes


def _placer_process(
    url: str, settings: BackendSettings, requests: list[PlaceRequest], in_flight: int,
    start: Any, results: Any,
) -> None:  # fmt: skip
    db = Database(url)  # this process's own connections
    committer = vms.placer(db, settings)
    start.wait()
    outcomes = in_flight_run(committer, requests, in_flight)
    committer.close()
    db.engine.dispose()
    results.put((outcomes, committer.batches))


def in_processes_run(
    url: str,
    settings: BackendSettings,
    requests: list[PlaceRequest],
    in_flight: int,
    processes: int,
) -> tuple[Outcomes, int]:
    """`in_flight_run` in `processes` processes at once (each its own placer and database
    connections, as backend replicas), the VMs dealt out in turn; their outcomes merged,
    and the transactions they needed."""
    ctx = multiprocessing.get_context("fork")
    start, results = ctx.Barrier(processes + 1), ctx.Queue()
    children = [
        ctx.Process(
            target=_placer_process,
            args=(url, settings, requests[k::processes], in_flight, start, results),
        )
        for k in range(processes)
    ]
    for child in children:
        child.start()
    start.wait()
    busy = machine_busy_seconds()
    done: list[tuple[Outcomes, int]] = results_of(children, results, "placer")
    busy = machine_busy_seconds() - busy
    merged = Outcomes.merged([outcomes for outcomes, _ in done])
    merged.busy = busy
    return merged, sum(batches for _, batches in done)


def per_host(host: Host, size: Size) -> int:
    """How many VMs of `size` an empty `host` takes (the scheduler's fit test)."""
    return min(
        int((host.cpu + 1e-9) // size.cpu),
        host.memory // size.memory,
        host.disk // size.disk,
    )


def audit(
    db: Database,
    settings: BackendSettings,
    host_ids: list[str],
    vm_ids: list[str],
    size: Size,
    outcomes: Outcomes,
) -> dict[str, Any]:
    """The checks of one way (see the module's doc), as numbers; `ok` when all hold."""
    rate = hourly_price(size.cpu, size.memory, size.disk, *PRICES.values())
    hold = billing.hold_for(rate, settings.hold_window)  # what take_hold holds
    with db.session() as s:
        hosts = list(s.scalars(select(Host).where(Host.id.in_(host_ids))))
        rows = list(
            s.execute(
                select(VM.id, VM.host_id, VM.reserved, VM.cpu, VM.memory, VM.disk).where(
                    VM.id.in_(vm_ids)
                )
            )
        )
        holds = {
            key: int(amount)
            for key, amount in s.execute(
                select(Balance.account_key, Balance.amount).where(
                    Balance.account_type == ledger.HOLD, Balance.account_key.in_(vm_ids)
                )
            )
        }
    placed = [r for r in rows if r.host_id is not None and r.reserved]
    unplaced = [r for r in rows if r.host_id is None and not r.reserved]
    on_host: dict[str, list[Any]] = {}
    for r in placed:
        on_host.setdefault(r.host_id, []).append(r)
    over = {"cpu": 0, "memory": 0, "disk": 0}
    mismatched = 0  # hosts whose reservations are not the sum of their VMs
    for h in hosts:
        over["cpu"] += h.reserved_cpu > h.cpu + 1e-9
        over["memory"] += h.reserved_memory > h.memory
        over["disk"] += h.reserved_disk > h.disk
        mine = on_host.get(h.id, [])
        mismatched += (
            abs(h.reserved_cpu - sum(r.cpu for r in mine)) > 1e-6
            or h.reserved_memory != sum(r.memory for r in mine)
            or h.reserved_disk != sum(r.disk for r in mine)
        )
    capacity = sum(per_host(h, size) for h in hosts)
    expected = min(len(vm_ids), capacity)
    wrong_holds = sum(holds.get(r.id, 0) != hold for r in placed) + sum(
        holds.get(r.id, 0) != 0 for r in unplaced
    )
    result: dict[str, Any] = {
        "capacity_vms": capacity,
        "expected_placed": expected,
        "placed": outcomes.placed,
        "placed_rows": len(placed),
        "refused_no_host_fits": outcomes.refused,
        "refused_rows_clean": len(unplaced),
        "other_errors": len(outcomes.other),
        "other_error_examples": outcomes.other[:3],
        "overcommitted_hosts": over,
        "hosts_not_matching_their_vms": mismatched,
        "full_hosts": sum(1 for h in hosts if len(on_host.get(h.id, [])) == per_host(h, size)),
        "held_total": sum(holds.values()),
        "wrong_holds": wrong_holds,
        "busiest_host_cpu": max((h.reserved_cpu for h in hosts), default=0.0),
    }
    result["ok"] = (
        not any(over.values())
        and mismatched == 0
        and not outcomes.other
        and outcomes.placed == expected == len(placed)
        and outcomes.refused == len(vm_ids) - expected == len(unplaced)
        and wrong_holds == 0
    )
    return result


def reset_hosts(db: Database, host_ids: list[str]) -> None:
    """Empty the hosts for the next way (the VMs of the previous one are another set), and
    vacuum what the previous way left: each way starts from the same clean tables, as a
    fleet whose autovacuum keeps up (the previous way's dead host versions would
    otherwise lie in the next way's index walks)."""
    with db.session() as s:
        s.execute(
            update(Host)
            .where(Host.id.in_(host_ids))
            .values(reserved_cpu=0, reserved_memory=0, reserved_disk=0, load=0)
        )
        s.commit()
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in ("hosts", "balances", "vms"):
                conn.execute(text(f"VACUUM ANALYZE {table}"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=5000)
    parser.add_argument(
        "--placements",
        type=int,
        default=10_100,
        help="VMs asked for per way (default 10,100: 100 more than the hosts take)",
    )
    parser.add_argument("--threads", type=int, default=2, help="callers, one commit each")
    parser.add_argument(
        "--clients", type=int, default=128, help="placements in flight at the group commit"
    )
    parser.add_argument(
        "--processes", type=int, default=2, help="placer processes at once (replicas); 0: skip"
    )
    parser.add_argument("--developers", type=int, default=500, help="funded VM owners")
    parser.add_argument(
        "--database-url",
        # From the environment by default (setup.sh bench sets it): not on the command line.
        default=os.environ.get("KUMULUS_TEST_POSTGRES_URL"),
        help="default: KUMULUS_TEST_POSTGRES_URL, else a fresh SQLite file",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with fresh_schema(args.database_url) as url:
        return run(args, url)


def run(args: argparse.Namespace, database_url: str | None) -> int:
    """The benchmark on `database_url` (a fresh SQLite file when None); the exit status."""
    size = Size(cpu=3.0, memory=12 * GIB, disk=200 * GIB)
    with tempfile.TemporaryDirectory(prefix="kumulus-bench-") as tmp:
        url = database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        settings = BackendSettings(data_dir=Path(tmp), database_url=url, heartbeat_ttl=TTL)
        db = Database(url)
        migrate(db.engine)
        suffix = secrets.token_hex(4)
        host_ids = [f"b{suffix}{i:07d}" for i in range(args.hosts)]
        ways = 3 if args.processes > 0 else 2
        vm_ids = populate(db, suffix, host_ids, args.developers, size, ways * args.placements)
        first, second, third = (
            vm_ids[k * args.placements : (k + 1) * args.placements] for k in range(3)
        )
        insert_rate = insert_commit_rate(db, suffix, 3000)

        each = one_commit_each(db, settings, place_requests(db, first), args.threads)
        each_audit = audit(db, settings, host_ids, first, size, each)

        reset_hosts(db, host_ids)
        committer = vms.placer(db, settings)  # the app's placer, as backend/app.py makes it
        grouped = in_flight_run(committer, place_requests(db, second), args.clients)
        committer.close()
        grouped_audit = audit(db, settings, host_ids, second, size, grouped)
        parallel: tuple[Outcomes, int] | None = None
        if args.processes > 0:
            reset_hosts(db, host_ids)
            requests = place_requests(db, third)
            db.engine.dispose()  # the children open their own connections
            parallel = in_processes_run(url, settings, requests, args.clients, args.processes)
            parallel_audit = audit(db, settings, host_ids, third, size, parallel[0])
        db.engine.dispose()

    def way(outcomes: Outcomes, audited: dict[str, Any], **extra: Any) -> dict[str, Any]:
        rates = outcomes.rates()
        return {
            **extra,
            **rates,
            "ratio_vs_insert": round(rates["placements_per_s"] / insert_rate, 2),
            **audited,
        }

    result = {
        "benchmark": "scheduler placements (backend placer: balances, hosts, holds, VM rows)",
        "database": url.split(":", 1)[0],
        "hosts": args.hosts,
        "host_size": {"cpu": 8.0, "memory": 32 * GIB, "disk": 500 * GIB},
        "vm_size": {"cpu": size.cpu, "memory": size.memory, "disk": size.disk},
        "placements": args.placements,
        "developers": args.developers,
        "baseline_insert_commit_per_s": round(insert_rate, 1),
        "one_commit_each": way(each, each_audit, threads=args.threads),
        "group_commit": way(
            grouped, grouped_audit, clients=args.clients, transactions=committer.batches
        ),
        "target_per_s": 3750,
    }
    if parallel is not None:
        result["group_commit_processes"] = way(
            parallel[0], parallel_audit, processes=args.processes, clients=args.clients,
            transactions=parallel[1],
        )  # fmt: skip
    audits = [each_audit, grouped_audit] + ([parallel_audit] if parallel is not None else [])
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"scheduler: {args.placements} VMs of {size.cpu:g} vCPU / 12 GiB / 200 GiB asked "
            f"for over {args.hosts} hosts of 8 vCPU / 32 GiB / 500 GiB (room for "
            f"{grouped_audit['capacity_vms']}), {args.developers} funded developers, "
            f"{result['database']}; backend placer (place_vms: balances, hosts, holds, VM rows)"
        )
        print(f"  baseline bare INSERT+COMMIT:  {insert_rate:8.0f} /s")
        named = [
            (f"one commit each ({args.threads} threads)", "one_commit_each", each_audit),
            (f"group commit ({args.clients} in flight)", "group_commit", grouped_audit),
        ]
        if parallel is not None:
            named.append(
                (
                    f"group commit in {args.processes} processes ({args.clients} in flight each)",
                    "group_commit_processes",
                    parallel_audit,
                )
            )
        for name, key, _ in named:
            w = result[key]
            print(
                f"  {name}: {w['placements_per_s']:8.0f} placements/s "
                f"({w['ratio_vs_insert']:.2f}x baseline), refused tail "
                f"{w['refusals_per_s']:.0f}/s, {w['seconds']:.1f} s in all, "
                f"{w['machine_cpu_us_per_outcome']} us machine CPU per outcome"
            )
        print(
            "  (target >= 3750/s group-committed, about 2.2x baseline on an idle 2-core "
            f"machine); {args.placements / max(committer.batches, 1):.1f} placements per commit"
        )
        for name, _, a in named:
            over = a["overcommitted_hosts"]
            print(
                f"  {name}: placed {a['placed']}/{a['expected_placed']} expected "
                f"({a['full_hosts']}/{args.hosts} hosts full), refused {a['refused_no_host_fits']}"
                f" no_host_fits ({a['refused_rows_clean']} clean), other errors "
                f"{a['other_errors']}, overcommitted hosts cpu/memory/disk "
                f"{over['cpu']}/{over['memory']}/{over['disk']}, hosts != their VMs "
                f"{a['hosts_not_matching_their_vms']}, wrong holds {a['wrong_holds']}: "
                f"{'ok' if a['ok'] else 'FAILED'}"
            )
            for example in a["other_error_examples"]:
                print(f"    {example}")
    return 0 if all(a["ok"] for a in audits) else 1


if __name__ == "__main__":
    sys.exit(main())
