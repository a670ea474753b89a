"""Scheduler placements per second over 5,000 simulated hosts, with a zero-overcommit check.

Two ways, same hosts, same run: one transaction and commit per placement (`--threads`
callers), and group-committed (`--clients` callers submitting to a GroupCommitter, as the
backend's placer does: backend/group_commit.py; each caller returns once its batch is
committed). Baseline, same database, same run: bare one-row INSERT + COMMIT transactions:
one commit per placement cannot beat it; group commit can. Target: >= 3,750/s on
PostgreSQL (Nomad's C1M rate on 5 servers), i.e. about 2.2x the baseline of an idle 2-core
machine (1,730/s); on a loaded machine compare the ratio.

    python -m bench.scheduler [--hosts 5000] [--placements 5000] [--threads 2]
                              [--clients 32] [--database-url URL] [--json]
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bench.common import GIB, add_hosts, insert_commit_rate, remove_hosts
from kumulus.backend.db import Database, migrate
from kumulus.backend.group_commit import RETRY, GroupCommitter, Retry
from kumulus.backend.models import Host
from kumulus.backend.scheduler import (
    HostsBusyError,
    NoHostFitsError,
    Placement,
    Want,
    place,
    place_once,
)

TTL = 3600.0


def place_batch(
    s: Session, wants: Sequence[Want], last_try: Sequence[bool]
) -> list[Placement | BaseException | Retry]:
    """The placer's batch (backend/vms.place_vms) without the VMs' holds."""
    out: list[Placement | BaseException | Retry] = []
    for want, last in zip(wants, last_try, strict=True):
        try:
            out.append(place_once(s, want, TTL))
        except HostsBusyError as exc:
            out.append(NoHostFitsError(str(exc)) if last else RETRY)
        except NoHostFitsError as exc:
            out.append(exc)
    return out


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
    parser.add_argument("--clients", type=int, default=32, help="callers of the group commit")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
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

        def client(count: int) -> int:
            refused = 0
            for _ in range(count):
                try:
                    committer.run(want)
                except NoHostFitsError:
                    refused += 1
            return refused

        per = [args.placements // args.clients] * args.clients
        per[0] += args.placements - sum(per)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            grouped_failures = sum(pool.map(client, per))
        grouped_rate = (args.placements - grouped_failures) / (time.perf_counter() - t0)
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
            f"  group commit ({args.clients} clients):  {grouped_rate:8.0f} /s   "
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
