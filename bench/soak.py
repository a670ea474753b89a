"""Soak: simulated agents send signed heartbeats with inventories to several backend
replicas on one PostgreSQL for a long time. Not in CI (it runs for minutes).

`--agents` hosts (2 VMs each, reported in every heartbeat's inventory) each beat every
`--interval` seconds, spread evenly over the interval, to the replicas in turn (as a
balancing proxy would): `kumulus backend run` processes, all on the same database.
Verdicts: heartbeat p99 < 1 s (measured from the moment each beat was due, so a load
generator falling behind counts against it too), zero lost heartbeats (every beat answered
202 and its row is in the database), flat memory (each replica's RSS, sampled every
`--sample` seconds: the last sample within 10% of the first one after the first minute or
the first third of the run, whichever is shorter).

Baseline in the same run: GET /healthz p99 at the same rate over the same clients, for
`--baseline` seconds before the soak.

    python -m bench.soak [--minutes 10] [--agents 1000] [--interval 10] [--replicas 3]
                         [--database-url URL] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import delete, func, insert, select
from tests.e2e.agent_process import BackendProcess

from bench.common import GIB, add_hosts, fresh_schema, remove_hosts
from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database, migrate
from kumulus.backend.models import VM, Account, Heartbeat, HostUptime, SeenNonce
from kumulus.core.signing import Domain, keypair_from_mnemonic, new_mnemonic, sign_envelope


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def p(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def paced(
    count: int, interval: float, seconds: float, send: Callable[[int, float], None], workers: int
) -> None:
    """Call send(i, due) for i = 0, 1, ... every interval/count seconds for `seconds`."""
    step = interval / count
    start = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        n = 0
        while True:
            due = start + n * step
            if due - start >= seconds:
                break
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(send, n, due)
            n += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between beats")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--baseline", type=float, default=20.0, help="seconds of /healthz")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--workers", type=int, default=64, help="client threads")
    parser.add_argument("--database-url", default=os.environ.get("KUMULUS_TEST_POSTGRES_URL"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.database_url or not args.database_url.startswith("postgresql"):
        parser.error("replicas share one PostgreSQL: give --database-url")
    # A schema of its own: a database keeps the keys of the first backend that used it.
    with fresh_schema(args.database_url) as url:
        assert url is not None
        return soak(args, url)


def soak(args: argparse.Namespace, url: str) -> int:
    """The soak on database `url` (migrated here); the exit status."""
    db = Database(url)
    migrate(db.engine)  # once, before the replicas start (none races another's migration)
    wallets = [keypair_from_mnemonic(new_mnemonic()) for _ in range(10)]
    suffix = secrets.token_hex(4)
    host_ids = [f"s{suffix}{i:06d}" for i in range(args.agents)]
    add_hosts(db, suffix, host_ids, lambda i: wallets[i % len(wallets)].ss58_address, False)
    vm_ids = {h: [secrets.token_hex(8) for _ in range(2)] for h in host_ids}
    with db.session() as s:
        owner = s.scalar(select(Account.id).where(Account.email == f"bench-{suffix}@example.com"))
        now = utcnow()
        s.execute(
            insert(VM),
            [
                {
                    "id": vm_id,
                    "account_id": owner,
                    "name": "soak",
                    "username": "dev",
                    "ssh_key": "ssh-ed25519 AAAA",
                    "cpu": 1.0,
                    "memory": GIB,
                    "disk": 10 * GIB,
                    "region": "eu",
                    "intended_state": "running",
                    "actual_state": "running",
                    "reserved": True,
                    "host_id": h,
                    "agent_vm_id": vm_id,
                    "created_at": now,
                    "updated_at": now,
                }
                for h, ids in vm_ids.items()
                for vm_id in ids
            ],
        )
        s.commit()

    def envelope(i: int) -> dict[str, Any]:
        host = host_ids[i % args.agents]
        payload = {
            "kind": "health",
            "hostId": host,
            "agentVersion": "soak",
            "host": {
                "cpuCount": 8,
                "cpuPercent": 12.5,
                "memoryTotal": 32 * GIB,
                "memoryPercent": 40.0,
                "diskTotal": 500 * GIB,
                "load": [0.1, 0.2, 0.3],
            },
            "vms": {"total": 2, "running": 2, "unhealthy": 0},
            "vmStats": [
                {"vmId": v, "state": "running", "cpuPercent": 3.0, "diskUsedBytes": GIB}
                for v in vm_ids[host]
            ],
        }
        env = sign_envelope(
            wallets[(i % args.agents) % len(wallets)], payload, domain=Domain.HEARTBEAT
        )
        return env.model_dump(mode="json")

    lock = threading.Lock()
    with tempfile.TemporaryDirectory(prefix="kumulus-soak-") as tmp:
        replicas: list[BackendProcess] = []
        try:
            # One key set for all the replicas, as production has (backend_keys.py).
            subprocess.run(
                [sys.executable, "-m", "kumulus.cli", "backend", "init-keys", f"{tmp}/keys"],
                check=True, capture_output=True, timeout=120,
            )  # fmt: skip
            keys = {"KUMULUS_BACKEND_KEY_FILE": f"{tmp}/keys/backend-mnemonic"}
            for k in range(args.replicas):
                replica = BackendProcess(Path(tmp) / f"replica{k}", database_url=url, **keys)
                replicas.append(replica.start())
            # One client per replica, shared by the threads (httpx.Client is thread-safe):
            # a client per thread spent seconds building TLS contexts while beats were due.
            limits = httpx.Limits(max_connections=args.workers)
            clients = [httpx.Client(base_url=r.url, timeout=30, limits=limits) for r in replicas]

            # Baseline: GET /healthz at the soak's rate, same clients and replicas.
            health: list[float] = []

            def probe(i: int, due: float) -> None:
                status = clients[i % len(clients)].get("/healthz").status_code
                with lock:
                    health.append(time.monotonic() - due if status == 200 else float("inf"))

            rate = args.agents / args.interval
            paced(args.agents, args.interval, args.baseline, probe, args.workers)

            latencies: list[float] = []
            lost: list[str] = []
            accepted = 0
            started = utcnow()

            def beat(i: int, due: float) -> None:
                nonlocal accepted
                body = envelope(i)
                try:
                    resp = clients[i % len(clients)].post("/v1/hosts/heartbeat", json=body)
                    outcome = "" if resp.status_code == 202 else f"{resp.status_code}"
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                with lock:
                    latencies.append(time.monotonic() - due)
                    if outcome:
                        lost.append(outcome)
                    else:
                        accepted += 1

            samples: list[list[int]] = []
            stop = threading.Event()

            def sampler() -> None:
                while not stop.wait(args.sample):
                    samples.append([rss_bytes(r.proc.pid) for r in replicas if r.proc])

            watcher = threading.Thread(target=sampler, daemon=True)
            watcher.start()
            paced(args.agents, args.interval, args.minutes * 60, beat, args.workers)
            stop.set()
            watcher.join()
            with db.session() as s:
                stored = s.scalar(
                    select(func.count())
                    .select_from(Heartbeat)
                    .where(Heartbeat.host_id.in_(host_ids), Heartbeat.received_at >= started)
                )
        finally:
            for replica in replicas:
                replica.stop()
            with db.session() as s:
                s.execute(delete(Heartbeat).where(Heartbeat.host_id.in_(host_ids)))
                s.execute(delete(HostUptime).where(HostUptime.host_id.in_(host_ids)))
                signers = [w.ss58_address for w in wallets]
                s.execute(delete(SeenNonce).where(SeenNonce.signer.in_(signers)))
                s.execute(delete(VM).where(VM.host_id.in_(host_ids)))
                s.commit()
            remove_hosts(db, suffix, host_ids)
            db.engine.dispose()

    warm = min(len(samples) - 1, max(1, int(min(60.0, args.minutes * 20) / args.sample)))
    first, last = (samples[warm], samples[-1]) if samples else ([], [])
    growth = [round((b - a) / a * 100, 1) for a, b in zip(first, last, strict=True) if a]
    result = {
        "benchmark": "soak: simulated agents against replicas",
        "minutes": args.minutes,
        "agents": args.agents,
        "interval_s": args.interval,
        "replicas": args.replicas,
        "rate_per_s": round(rate, 1),
        "heartbeats_sent": len(latencies),
        "accepted": accepted,
        "stored": stored,
        "lost": len(lost) + (accepted - (stored or 0)),
        "refusals": sorted(set(lost)),
        "p50_s": round(p(latencies, 0.5), 3),
        "p99_s": round(p(latencies, 0.99), 3),
        "max_s": round(max(latencies, default=0.0), 3),
        "baseline_healthz_p50_s": round(p(health, 0.5), 3),
        "baseline_healthz_p99_s": round(p(health, 0.99), 3),
        "rss_mib_first_last": [
            [round(a / 2**20, 1), round(b / 2**20, 1)] for a, b in zip(first, last, strict=True)
        ],
        "rss_growth_pct": growth,
        "rss_mean_mib": [
            round(statistics.mean(col) / 2**20, 1) for col in zip(*samples, strict=True)
        ],
    }
    ok = result["p99_s"] < 1.0 and result["lost"] == 0 and all(g < 10 for g in growth)
    result["verdict"] = "pass" if ok else "fail"
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"soak: {args.agents} agents every {args.interval:g} s ({rate:.0f}/s) against "
            f"{args.replicas} replicas for {args.minutes:g} min"
        )
        print(
            f"  heartbeat latency from due: p50 {result['p50_s']} s, p99 {result['p99_s']} s "
            f"(target < 1 s), max {result['max_s']} s"
        )
        print(
            f"  baseline GET /healthz same rate: p50 {result['baseline_healthz_p50_s']} s, "
            f"p99 {result['baseline_healthz_p99_s']} s"
        )
        print(
            f"  sent {len(latencies)}, accepted {accepted}, stored {stored}, lost "
            f"{result['lost']} {result['refusals'] or ''}"
        )
        print(
            f"  replica RSS MiB (after warm-up -> end): {result['rss_mib_first_last']}, "
            f"growth % {growth} (flat: < 10%)"
        )
        print(f"  verdict: {result['verdict']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
