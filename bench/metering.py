"""Seconds per metering + enforcement pass (`jobs.meter.meter_and_enforce`) over 10,000
running VMs on prepaid holds, in its chunks of 500 VMs per transaction.

Two kinds of pass: steady state (15 s since the last pass: usage accrues on each VM's hold,
nothing is due to be posted) and renewal (more than half of every hold used: each VM's
usage is posted to the ledger and its hold topped up from its developer's deposits).

Baseline, same database, same run: the same number of bare one-row UPDATEs on a scratch
table, in the same chunks, one COMMIT per chunk. The rows are made with the real billing
functions: developers funded from the chain (`ledger.transfer`), then per VM `lock_vms`,
`take_hold`, `start_metering`. A pass meters every VM of its database, so on PostgreSQL the
bench works in a scratch schema `bench_<hex>` (dropped afterwards), and a SQLite
--database-url must be a new file. Target: <= 1 s per pass on PostgreSQL.

    python -m bench.metering [--vms 10000] [--hosts 100] [--developers 1000] [--passes 3]
                             [--database-url URL] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert, select, update

from bench.common import GIB, add_funded_developers, add_hosts, fresh_schema, update_chunked_seconds
from kumulus.backend import billing
from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database, migrate
from kumulus.backend.jobs.meter import CHUNK, MeterReport, meter_and_enforce
from kumulus.backend.models import VM, Host
from kumulus.config import BackendSettings

UNIT = 10**12
STEADY_S = 15.0  # the maintenance loop's interval


@contextmanager
def scratch_database(url: str | None, tmp: Path) -> Iterator[str]:
    """The URL the bench works on: a fresh SQLite file, or a scratch schema on PostgreSQL."""
    if url is None:
        yield f"sqlite:///{tmp / 'bench.db'}"
        return
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        if path.exists():
            raise SystemExit(f"{path} exists: a metering pass meters every VM in it")
        yield url
        return
    with fresh_schema(url) as scratch:
        assert scratch is not None
        yield scratch


def populate(
    db: Database, suffix: str, vms: int, hosts: int, developers: int, terms: billing.Terms
) -> None:
    """Hosts, funded developers, and `vms` running VMs spread over them, each with a hold."""
    host_ids = [f"h{suffix}{i:05d}" for i in range(hosts)]
    add_hosts(db, suffix, host_ids, lambda _: "w", online=True)
    now = utcnow()
    with db.session() as s:
        s.execute(
            update(Host)
            .where(Host.id.in_(host_ids))
            .values(
                price_cpu_hour=UNIT // 100,  # 0.01 per vCPU-hour
                price_memory_gib_hour=UNIT // 200,  # 0.005 per GiB-hour
                price_disk_gib_hour=UNIT // 10_000,  # 0.0001 per GiB-hour
            )
        )
        dev_ids = add_funded_developers(s, suffix, developers, 100 * UNIT)
        s.commit()
        for start in range(0, vms, CHUNK):
            rows = [
                {
                    "id": f"v{suffix}{i:06d}",
                    "account_id": dev_ids[i % developers],
                    "name": f"vm{i}",
                    "host_id": host_ids[i % hosts],
                    "agent_vm_id": f"a{i}",
                    "username": "dev",
                    "ssh_key": "ssh-ed25519 AAAA",
                    "cpu": 2.0,
                    "memory": 4 * GIB,
                    "disk": 20 * GIB,
                    "region": "eu",
                    "intended_state": "running",
                    "actual_state": "running",
                    "reserved": True,
                    "price_cpu_hour": UNIT // 100,
                    "price_memory_gib_hour": UNIT // 200,
                    "price_disk_gib_hour": UNIT // 10_000,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(start, min(start + CHUNK, vms))
            ]
            s.execute(insert(VM), rows)
            chunk = list(s.scalars(select(VM).where(VM.id.in_([r["id"] for r in rows]))))
            locked, _ = billing.lock_vms(s, chunk)
            for vm in chunk:
                billing.take_hold(s, vm, locked, terms)
                billing.start_metering(vm, now)
            s.commit()


def rewind(db: Database, seconds: float) -> None:
    """Make the last pass `seconds` ago (posting left recent): what the next pass charges.
    The hosts heartbeat now: a host silent for longer than the heartbeat TTL is offline,
    its VMs pay the disk-only rate and no renewal would ever be due."""
    now = utcnow()
    with db.session() as s:
        s.execute(update(VM).values(metered_until=now - timedelta(seconds=seconds)))
        s.execute(update(Host).values(last_heartbeat_at=now))
        s.commit()


def timed_passes(
    db: Database, settings: BackendSettings, passes: int, before: Callable[[], None]
) -> tuple[list[float], MeterReport]:
    times = []
    report = MeterReport()
    for _ in range(passes):
        before()
        t0 = time.perf_counter()
        report = meter_and_enforce(db, settings)
        times.append(time.perf_counter() - t0)
    return times, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--developers", type=int, default=1000)
    parser.add_argument("--passes", type=int, default=3, help="of each kind; the median counts")
    parser.add_argument(
        "--database-url",
        # From the environment by default (setup.sh bench sets it): not on the command line.
        default=os.environ.get("KUMULUS_TEST_POSTGRES_URL"),
        help="default: KUMULUS_TEST_POSTGRES_URL, else a fresh SQLite file",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    suffix = secrets.token_hex(4)
    with (
        tempfile.TemporaryDirectory(prefix="kumulus-bench-") as tmp,
        scratch_database(args.database_url, Path(tmp)) as url,
    ):
        settings = BackendSettings(data_dir=Path(tmp), database_url=url)
        terms = billing.terms_of(settings)
        db = Database(url)
        migrate(db.engine)
        t0 = time.perf_counter()
        populate(db, suffix, args.vms, args.hosts, args.developers, terms)
        setup_s = time.perf_counter() - t0
        baseline = update_chunked_seconds(db, suffix, args.vms, CHUNK)

        steady, steady_report = timed_passes(
            db, settings, args.passes, lambda: rewind(db, STEADY_S)
        )
        # More than half of each hold used since the last pass: renewal is due.
        renewal, renewal_report = timed_passes(
            db, settings, args.passes, lambda: rewind(db, terms.window / 2 + STEADY_S)
        )
        db.engine.dispose()

    steady_s, renewal_s = statistics.median(steady), statistics.median(renewal)
    ok = (
        steady_report.metered == renewal_report.metered == args.vms
        and steady_report.posted == 0
        and renewal_report.posted == args.vms
        and not (steady_report.skipped or renewal_report.skipped)
        and not (steady_report.stopped_for_funds or renewal_report.stopped_for_funds)
    )
    result = {
        "benchmark": "metering + enforcement pass",
        "database": url.split(":", 1)[0],
        "vms": args.vms,
        "hosts": args.hosts,
        "developers": args.developers,
        "chunk": CHUNK,
        "passes": args.passes,
        "steady_s_per_pass": round(steady_s, 3),
        "renewal_s_per_pass": round(renewal_s, 3),
        "baseline_update_s": round(baseline, 3),
        "steady_ratio_vs_update": round(steady_s / baseline, 2),
        "renewal_ratio_vs_update": round(renewal_s / baseline, 2),
        "steady_posted": steady_report.posted,
        "renewal_posted": renewal_report.posted,
        "skipped": steady_report.skipped + renewal_report.skipped,
        "stopped_for_funds": steady_report.stopped_for_funds + renewal_report.stopped_for_funds,
        "setup_s": round(setup_s, 1),
        "target_s_per_pass": 1.0,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"metering: one pass over {args.vms} running VMs on {args.hosts} hosts, "
            f"{args.developers} developers, {CHUNK} VMs per transaction, {result['database']} "
            f"(median of {args.passes})"
        )
        print(f"  baseline {args.vms} bare UPDATEs:   {baseline:7.3f} s")
        print(
            f"  steady pass (accrual only):   {steady_s:7.3f} s   "
            f"({result['steady_ratio_vs_update']}x baseline; target <= 1 s)"
        )
        print(
            f"  renewal pass (post + renew):  {renewal_s:7.3f} s   "
            f"({result['renewal_ratio_vs_update']}x baseline; target <= 1 s)"
        )
        print(
            f"  posted: {steady_report.posted} steady, {renewal_report.posted} renewal   "
            f"skipped: {result['skipped']}   stopped for funds: {result['stopped_for_funds']}   "
            f"setup {setup_s:.0f} s"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
