"""Scheduler placements per second over 5,000 simulated hosts, with a zero-overcommit check.

Two ways, same hosts, same run: one transaction and commit per placement (`--threads`
callers), and group-committed in one pass per batch (`--clients` placements in flight at a
GroupCommitter running backend/batch_placement.place_many, as the backend's placer does;
each finishes once its batch is committed). Baseline, same database, same run: bare
one-row INSERT + COMMIT transactions: one commit per placement cannot beat it; group
commit can. Target: >= 3,750/s on PostgreSQL (Nomad's C1M rate on 5 servers), i.e. about
2.2x the baseline of an idle 2-core machine (1,730/s when the target was set); on a
slower or loaded machine compare the ratio.

    python -m bench.scheduler [--hosts 5000] [--placements 5000] [--threads 2]
                              [--clients 128] [--database-url URL] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bench.common import GIB, add_hosts, insert_commit_rate, remove_hosts
from kumulus.backend.batch_placement import place_many
from kumulus.backend.db import Database, migrate
from kumulus.backend.group_commit import RETRY, GroupCommitter, Retry
from kumulus.backend.models import Host
from kumulus.backend.scheduler import (
    HostsBusyError,
    NoHostFitsError,
    Placement,
    Want,
    place,
)

TTL = 3600.0


def place_batch(
    s: Session, wants: Sequence[Want], last_try: Sequence[bool]
) -> list[Placement | BaseException | Retry]:
    """The placer's batch (backend/vms.place_vms) without the VMs' holds."""
    out: list[Placement | BaseException | Retry] = []
    for outcome, last in zip(place_many(s, wants, TTL), last_try, strict=True):
        if isinstance(outcome, HostsBusyError):
            out.append(NoHostFitsError(str(outcome)) if last else RETRY)
        else:
            out.append(outcome)
    return out


def in_flight_run(
    committer: GroupCommitter[Want, Placement], want: Want, count: int, in_flight: int
) -> tuple[int, float]:
    """Place `count` VMs keeping `in_flight` placements outstanding: each one that finishes
    submits the next, as that many concurrent create requests would. (Driven by the
    futures' callbacks rather than `in_flight` waiting threads: waking a thread per
    placement cost this process more than the placements, and a backend's requests wait
    on its event loop, not on threads.) Returns the refusals and the placements per s."""
    lock = threading.Lock()
    done = threading.Event()
    state = {"left": count, "finished": 0, "refused": 0}

    def next_one(finished: Future[Placement] | None = None) -> None:
        with lock:
            if finished is not None:
                state["finished"] += 1
                if isinstance(finished.exception(), NoHostFitsError):
                    state["refused"] += 1
                elif finished.exception() is not None:
                    raise SystemExit(f"a placement failed: {finished.exception()!r}")
                if state["finished"] == count:
                    done.set()
            if state["left"] == 0:
                return
            state["left"] -= 1
        committer.submit(want).add_done_callback(next_one)

    t0 = time.perf_counter()
    for _ in range(min(in_flight, count)):
        next_one()
    done.wait()
    return state["refused"], (count - state["refused"]) / (time.perf_counter() - t0)


def overcommitted(db: Database, ids: list[str]) -> tuple[list[str], float, float]:
    """Hosts reserved past their capacity, total reserved vCPU, the busiest host's."""
    with db.session() as s:
        hosts = list(s.scalars(select(Host).where(Host.id.in_(ids))))
        over = [
            h.id
            for h in hosts
            if h.reserved_cpu > h.cpu + 1e-9
            or h.reserved_memory > h.memory
            or h.reserved_disk > h.disk
        ]
        return over, sum(h.reserved_cpu for h in hosts), max(h.reserved_cpu for h in hosts)


def reset(db: Database, ids: list[str]) -> None:
    with db.session() as s:
        s.execute(
            update(Host)
            .where(Host.id.in_(ids))
            .values(reserved_cpu=0, reserved_memory=0, reserved_disk=0, load=0)
        )
        s.commit()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=5000)
    parser.add_argument("--placements", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=2, help="callers, one commit each")
    parser.add_argument(
        "--clients", type=int, default=128, help="placements in flight at the group commit"
    )
    parser.add_argument(
        "--database-url",
        # From the environment by default (setup.sh bench sets it): not on the command line.
        default=os.environ.get("KUMULUS_TEST_POSTGRES_URL"),
        help="default: KUMULUS_TEST_POSTGRES_URL, else a fresh SQLite file",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="kumulus-bench-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        db = Database(url)
        migrate(db.engine)
        suffix = secrets.token_hex(4)
        ids = [f"b{suffix}{i:07d}" for i in range(args.hosts)]
        add_hosts(db, suffix, ids, lambda _: "w", online=True)
        insert_rate = insert_commit_rate(db, suffix, min(args.placements, 3000))

        want = Want(cpu=0.5, memory=GIB, disk=10 * GIB)
        failures = 0
        lock = threading.Lock()

        def worker(count: int) -> None:
            nonlocal failures
            with db.session() as s:
                for _ in range(count):
                    try:
                        place(s, want, ttl=TTL)
                    except NoHostFitsError:
                        with lock:
                            failures += 1

        per = [args.placements // args.threads] * args.threads
        per[0] += args.placements - sum(per)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(worker, per))
        rate = (args.placements - failures) / (time.perf_counter() - t0)
        over, reserved, busiest = overcommitted(db, ids)

        reset(db, ids)
        committer: GroupCommitter[Want, Placement] = GroupCommitter(db, place_batch, "placer")
        grouped_failures, grouped_rate = in_flight_run(
            committer, want, args.placements, args.clients
        )
        committer.close()
        grouped_over, grouped_reserved, grouped_busiest = overcommitted(db, ids)
        remove_hosts(db, suffix, ids)
        db.engine.dispose()

    result = {
        "benchmark": "scheduler placements",
        "database": url.split(":", 1)[0],
        "hosts": args.hosts,
        "placements": args.placements,
        "baseline_insert_commit_per_s": round(insert_rate, 1),
        "one_commit_each": {
            "threads": args.threads,
            "placements_per_s": round(rate, 1),
            "ratio_vs_insert": round(rate / insert_rate, 2),
            "failed_placements": failures,
            "overcommitted_hosts": len(over),
            "busiest_host_cpu": busiest,
        },
        "group_commit": {
            "clients": args.clients,
            "placements_per_s": round(grouped_rate, 1),
            "ratio_vs_insert": round(grouped_rate / insert_rate, 2),
            "transactions": committer.batches,
            "failed_placements": grouped_failures,
            "overcommitted_hosts": len(grouped_over),
            "busiest_host_cpu": grouped_busiest,
        },
        "reserved_cpu_total": [reserved, grouped_reserved],
        "target_per_s": 3750,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"scheduler: {args.placements} placements over {args.hosts} hosts, {result['database']}"
        )
        print(f"  baseline bare INSERT+COMMIT:  {insert_rate:8.0f} /s")
        print(
            f"  one commit each ({args.threads} threads): {rate:8.0f} /s   "
            f"({rate / insert_rate:.2f}x baseline)"
        )
        print(
            f"  group commit ({args.clients} in flight):  {grouped_rate:8.0f} /s   "
            f"({grouped_rate / insert_rate:.2f}x baseline; target >= 3750/s, about 2.2x on an "
            f"idle 2-core machine), {args.placements / max(committer.batches, 1):.1f} per commit"
        )
        print(
            f"  overcommitted hosts: {len(over)} / {len(grouped_over)}   failed placements: "
            f"{failures} / {grouped_failures}   busiest host: {busiest:g} / "
            f"{grouped_busiest:g} of 8 vCPU (spread)"
        )
    bad = over or grouped_over or failures or grouped_failures
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
