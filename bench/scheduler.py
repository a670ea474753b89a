"""Scheduler placements per second over 5,000 simulated hosts, with a zero-overcommit check.

Baseline, same database, same run: bare one-row INSERT + COMMIT transactions. A placement
is a candidate SELECT plus a conditional UPDATE + COMMIT, so the ratio shows what the
scheduler costs above the database's own write rate.

    python -m bench.scheduler [--hosts 5000] [--placements 5000] [--threads 2]
                              [--database-url URL] [--json]
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import select

from bench.common import GIB, add_hosts, insert_commit_rate, remove_hosts
from kumulus.backend.db import Database, migrate
from kumulus.backend.models import Host
from kumulus.backend.scheduler import NoHostFitsError, Want, place


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=5000)
    parser.add_argument("--placements", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=2)
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
                        place(s, want, ttl=3600)
                    except NoHostFitsError:
                        with lock:
                            failures += 1

        per = [args.placements // args.threads] * args.threads
        per[0] += args.placements - sum(per)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(worker, per))
        elapsed = time.perf_counter() - t0
        rate = (args.placements - failures) / elapsed

        with db.session() as s:
            hosts = list(s.scalars(select(Host).where(Host.id.in_(ids))))
            over = [
                h.id
                for h in hosts
                if h.reserved_cpu > h.cpu + 1e-9
                or h.reserved_memory > h.memory
                or h.reserved_disk > h.disk
            ]
            reserved = sum(h.reserved_cpu for h in hosts)
            busiest = max(h.reserved_cpu for h in hosts)
        remove_hosts(db, suffix, ids)
        db.engine.dispose()

    result = {
        "benchmark": "scheduler placements",
        "database": url.split(":", 1)[0],
        "hosts": args.hosts,
        "placements": args.placements,
        "threads": args.threads,
        "placements_per_s": round(rate, 1),
        "baseline_insert_commit_per_s": round(insert_rate, 1),
        "ratio_vs_insert": round(rate / insert_rate, 2),
        "failed_placements": failures,
        "overcommitted_hosts": len(over),
        "reserved_cpu_total": reserved,
        "busiest_host_cpu": busiest,
        "target_per_s": 1000,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"scheduler: {args.placements} placements over {args.hosts} hosts, "
            f"{args.threads} threads, {result['database']}"
        )
        print(f"  baseline bare INSERT+COMMIT: {insert_rate:8.0f} /s")
        print(
            f"  placements:                  {rate:8.0f} /s   ({result['ratio_vs_insert']}x "
            f"baseline; target >= 1000/s)"
        )
        print(
            f"  overcommitted hosts: {len(over)}   failed placements: {failures}   "
            f"busiest host: {busiest:g} of 8 vCPU (spread)"
        )
    return 1 if over or failures else 0


if __name__ == "__main__":
    sys.exit(main())
