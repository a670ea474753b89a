"""Signed heartbeats accepted per second by the backend's handler, run as the heartbeat
route runs it: on one of `heartbeat_threads` threads, the body's parsing, sr25519
verification, then the heartbeat handed to the group-commit writer (host lookup, heartbeat
row, VM inventory, host update with the replay check, uptime), which stores what arrived
together in one transaction; the
commit is awaited on the event loop. `--in-flight` heartbeats at a time per process, as
that many open requests would hold.

With `--processes N` the handler runs in N processes on the one database (as N backend
replicas would), each with its own writer and pool, each beating for its share of the hosts
(a host's beats are 10 s apart: two replicas never store the same host's beats together);
the rate is all of them over the wall time. Target: >= 5,000/s in 3 processes on
PostgreSQL (50,000 hosts at a 10 s interval).

With `--http`, also the whole path: `--processes` backend replicas (`kumulus backend run`,
one key set, the same database) behind Debian's nginx serving the TLS site that
deploy/nginx/render-site.sh renders for production, are sent fresh signed heartbeats over
HTTPS by `--threads` clients, then `GET /healthz` as many times by as many clients through
the same proxy: the ratio is what a heartbeat costs above the server's cheapest request on
the same stack, replicas and load generator. Each replica's CPU seconds per phase are
reported (nginx balances the requests over all of them). The load generator (Python
clients) shares the machine with nginx, the replicas and PostgreSQL.

Baselines in the same run: bare one-row INSERT + COMMIT on the same database, and sr25519
verification alone.

    python -m bench.heartbeats [--count 3000] [--hosts 1000] [--in-flight 256] [--processes 1]
                               [--threads 32]
                               [--http] [--database-url URL] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import anyio
import httpx
from sqlalchemy import delete
from substrateinterface import Keypair

from bench.common import (
    add_hosts,
    cpu_seconds,
    fresh_schema,
    insert_commit_rate,
    machine_busy_seconds,
    remove_hosts,
    results_of,
)
from kumulus.backend.api.routes.agents import (
    accept_heartbeat,
    check_outcome,
    verify_and_store,
)
from kumulus.backend.db import Database, migrate
from kumulus.backend.heartbeat_intake import HeartbeatIntake
from kumulus.backend.heartbeats import HeartbeatWriter, Outcome, VerifiedHeartbeat
from kumulus.backend.models import Heartbeat, HostUptime, SeenNonce
from kumulus.config import BackendSettings
from kumulus.core.errors import KumulusError
from kumulus.core.signing import (
    Domain,
    NonceCache,
    SignedEnvelope,
    keypair_from_mnemonic,
    new_mnemonic,
    sign_envelope,
    verify_envelope,
)

PAYLOAD = {
    "kind": "health",
    "agentVersion": "bench",
    "host": {"cpuPercent": 12.5, "memoryPercent": 40.0, "load": [0.1, 0.2, 0.3]},
    "vms": {"total": 3, "running": 3, "unhealthy": 0},
    "vmStats": [],
}


def envelopes_for(wallets: list[Keypair], host_ids: list[str], count: int) -> list[SignedEnvelope]:
    """`count` fresh signed heartbeats, round-robin over the hosts (host i signs with
    wallet i mod len(wallets), as add_hosts records it)."""
    return [
        sign_envelope(
            wallets[(i % len(host_ids)) % len(wallets)],
            {**PAYLOAD, "hostId": host_ids[i % len(host_ids)]},
            domain=Domain.HEARTBEAT,
        )
        for i in range(count)
    ]


def _handler_process(
    url: str,
    settings: BackendSettings,
    envelopes: list[SignedEnvelope],
    in_flight: int,
    start: Barrier,
    results: Any,
) -> None:
    """One replica's handler, as the heartbeat route runs it (agents.verify_and_store of
    the request's body on `heartbeat_threads` threads of a HeartbeatIntake, as the app's;
    the batch's commit
    awaited on the event loop, no thread held); `in_flight` heartbeats at a time, as that many open
    requests would."""
    db = Database(url)
    writer = HeartbeatWriter(db, ttl=settings.heartbeat_ttl)

    intake = HeartbeatIntake(
        partial(verify_and_store, settings=settings, limits=None, writer=writer),
        settings.heartbeat_threads,
    )

    # The request bodies, read on the heartbeat threads as the route's are.
    bodies = [envelope.model_dump_json().encode() for envelope in envelopes]

    async def run_all() -> None:
        pending = iter(bodies)

        async def connection() -> None:  # one open request after another
            loop = asyncio.get_running_loop()
            for body in pending:
                waiter: asyncio.Future[Outcome | KumulusError] = loop.create_future()
                prepared: list[VerifiedHeartbeat] = []
                intake.submit(body, waiter, prepared)
                async with asyncio.timeout(30):
                    result = await waiter
                if isinstance(result, KumulusError):
                    raise result
                check_outcome(prepared[0], result)

        async with anyio.create_task_group() as tasks:
            for _ in range(in_flight):
                tasks.start_soon(connection)

    start.wait()
    t0, cpu0 = time.time(), time.process_time()
    anyio.run(run_all)
    results.put((t0, time.time(), writer.batches, time.process_time() - cpu0))
    intake.close()
    writer.close()
    db.engine.dispose()


def handler_rate(
    url: str, settings: BackendSettings, envelopes: list[SignedEnvelope], in_flight: int,
    processes: int, hosts: int,
) -> tuple[float, int, float, float]:  # fmt: skip
    """Heartbeats/s through the handler in `processes` processes; the transactions; the
    CPU seconds the handler processes used, and the whole machine (database included)."""
    ctx = multiprocessing.get_context("fork")
    start, results = ctx.Barrier(processes), ctx.Queue()
    # Split by host: process k beats for hosts k, k + processes, ...
    shares = [[e for i, e in enumerate(envelopes) if (i % hosts) % processes == k]
              for k in range(processes)]  # fmt: skip
    children = [
        ctx.Process(target=_handler_process, args=(url, settings, share, in_flight, start, results))
        for share in shares
    ]
    busy0 = machine_busy_seconds()
    for child in children:
        child.start()
    done = results_of(children, results, "handler")
    busy = machine_busy_seconds() - busy0
    elapsed = max(d[1] for d in done) - min(d[0] for d in done)
    handlers = sum(d[3] for d in done)
    return len(envelopes) / elapsed, sum(d[2] for d in done), handlers, busy


def http_rates(
    url: str, tmp: Path, envelopes: list[SignedEnvelope], threads: int, replicas: int
) -> dict[str, Any]:
    """Heartbeats/s and GET /healthz/s over HTTPS from `threads` clients through Debian's
    nginx serving the site deploy/nginx/render-site.sh renders (as production runs it), in
    front of `replicas` backend processes (`kumulus backend run`, one key set, the one
    database), which nginx balances the requests over."""
    from tests.e2e.agent_process import BackendProcess
    from tests.nginx_proxy import nginx_proxy

    # One key set for all the replicas, as production has (backend_keys.py).
    subprocess.run(
        [sys.executable, "-m", "kumulus.cli", "backend", "init-keys", str(tmp / "keys")],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    keys = {"KUMULUS_BACKEND_KEY_FILE": str(tmp / "keys" / "backend-mnemonic")}
    backends = [
        BackendProcess(tmp / f"http-backend{k}", database_url=url, **keys) for k in range(replicas)
    ]
    local = threading.local()
    try:
        for backend in backends:  # the schema is migrated already: none races another
            backend.start_timeout = 120  # several importing at once on 2 cores
            backend.start()
        pids = [b.proc.pid for b in backends if b.proc is not None]
        addresses = [f"127.0.0.1:{b.port}" for b in backends]
        with nginx_proxy(tmp / "nginx", addresses) as proxy:

            def client() -> httpx.Client:
                if not hasattr(local, "client"):
                    local.client = httpx.Client(
                        base_url=proxy.url, timeout=30, verify=str(proxy.ca_file)
                    )
                return local.client  # type: ignore[no-any-return]

            def beat(env: SignedEnvelope) -> int:
                body = env.model_dump(mode="json", by_alias=True)
                return client().post("/v1/hosts/heartbeat", json=body).status_code

            def healthz(_: int) -> int:
                return client().get("/healthz").status_code

            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(healthz, range(threads)))  # every client's TLS handshake
                cpu0 = [cpu_seconds(pid) for pid in pids]
                t0 = time.perf_counter()
                statuses = list(pool.map(beat, envelopes))
                beat_rate = len(envelopes) / (time.perf_counter() - t0)
                cpu1 = [cpu_seconds(pid) for pid in pids]
                t0 = time.perf_counter()
                health = list(pool.map(healthz, range(len(envelopes))))
                health_rate = len(envelopes) / (time.perf_counter() - t0)
                cpu2 = [cpu_seconds(pid) for pid in pids]
    finally:
        for backend in backends:
            backend.stop()
    return {
        "heartbeats_per_s": round(beat_rate, 1),
        "baseline_healthz_per_s": round(health_rate, 1),
        "ratio_vs_healthz": round(beat_rate / health_rate, 2),
        "accepted": statuses.count(202),
        "healthz_ok": health.count(200),
        "clients": threads,
        "replicas": replicas,
        # Each replica's CPU seconds in each phase: every one of them served its share.
        "replica_cpu_s_heartbeats": [round(b - a, 2) for a, b in zip(cpu0, cpu1, strict=True)],
        "replica_cpu_s_healthz": [round(b - a, 2) for a, b in zip(cpu1, cpu2, strict=True)],
        "via": f"nginx (deploy/nginx site, TLS) in front of {replicas} backend process(es)",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=32, help="HTTP clients (--http)")
    parser.add_argument(
        "--in-flight", type=int, default=256, help="heartbeats in flight per handler process"
    )
    parser.add_argument("--processes", type=int, default=1, help="handler processes (replicas)")
    parser.add_argument("--http", action="store_true", help="also over HTTP, vs GET /healthz")
    parser.add_argument(
        "--database-url",
        # From the environment by default (setup.sh bench sets it): not on the command line.
        default=os.environ.get("KUMULUS_TEST_POSTGRES_URL"),
        help="default: KUMULUS_TEST_POSTGRES_URL, else a fresh SQLite file",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.hosts < max(args.in_flight * args.processes, args.threads):
        # A host sends one heartbeat at a time, each signed later than the last: two of
        # one host's in flight together may be stored out of order, and the older refused.
        parser.error("give at least --in-flight x --processes (and --threads) hosts")
    # A schema of its own: a database keeps the keys of the first backend that used it
    # (--http starts one).
    with fresh_schema(args.database_url) as url:
        return run(args, url)


def run(args: argparse.Namespace, database_url: str | None) -> int:
    """The benchmark on `database_url` (a fresh SQLite file when None); the exit status."""
    wallets = [keypair_from_mnemonic(new_mnemonic()) for _ in range(10)]
    suffix = secrets.token_hex(4)
    host_ids = [f"h{suffix}{i:06d}" for i in range(args.hosts)]
    envelopes = envelopes_for(wallets, host_ids, args.count)

    t0 = time.perf_counter()
    nonces = NonceCache()
    for env in envelopes:
        verify_envelope(env, nonces, domain=Domain.HEARTBEAT)
    verify_rate = len(envelopes) / (time.perf_counter() - t0)

    with tempfile.TemporaryDirectory(prefix="kumulus-bench-") as tmp:
        url = database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        settings = BackendSettings(data_dir=Path(tmp), database_url=url)
        db = Database(url)
        migrate(db.engine)
        add_hosts(
            db, suffix, host_ids, lambda i: wallets[i % len(wallets)].ss58_address, online=False
        )
        insert_rate = insert_commit_rate(db, suffix, min(args.count, 3000))

        rate, batches, handler_cpu, machine_cpu = handler_rate(
            url, settings, envelopes, args.in_flight, args.processes, args.hosts
        )
        http = None
        if args.http:
            http = http_rates(
                url,
                Path(tmp),
                envelopes_for(wallets, host_ids, args.count),
                args.threads,
                args.processes,
            )

        writer = HeartbeatWriter(db, ttl=settings.heartbeat_ttl)
        refused = 0  # replays of the same envelopes are all refused
        for env in envelopes[:50]:
            try:
                accept_heartbeat(env, writer, settings)
            except KumulusError:
                refused += 1
        writer.close()
        with db.session() as s:
            s.execute(delete(Heartbeat).where(Heartbeat.host_id.in_(host_ids)))
            s.execute(delete(HostUptime).where(HostUptime.host_id.in_(host_ids)))
            s.execute(
                delete(SeenNonce).where(SeenNonce.signer.in_([w.ss58_address for w in wallets]))
            )
            s.commit()
        remove_hosts(db, suffix, host_ids)
        db.engine.dispose()

    result = {
        "benchmark": "signed heartbeats accepted",
        "database": url.split(":", 1)[0],
        "count": args.count,
        "heartbeats_per_s": round(rate, 1),
        "baseline_insert_commit_per_s": round(insert_rate, 1),
        "baseline_sr25519_verify_per_s": round(verify_rate, 1),
        "ratio_vs_insert": round(rate / insert_rate, 2),
        "in_flight": args.in_flight,
        "processes": args.processes,
        "transactions": batches,
        "cpu_us_per_heartbeat": {
            "handlers": round(handler_cpu / args.count * 1e6),
            "machine": round(machine_cpu / args.count * 1e6),
        },
        "replays_refused": f"{refused}/50",
        "target_per_s": 5000 if args.processes > 1 else 1000,
        "http": http,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"heartbeats: {args.count} signed envelopes from {args.hosts} hosts, "
            f"{result['database']}"
        )
        print(f"  baseline bare INSERT+COMMIT: {insert_rate:8.0f} /s")
        print(f"  baseline sr25519 verify only:{verify_rate:8.0f} /s")
        print(
            f"  heartbeats accepted:         {rate:8.0f} /s   ({result['ratio_vs_insert']}x "
            f"INSERT baseline; target >= {result['target_per_s']}/s)"
        )
        print(
            f"  {args.processes} process(es) x {args.in_flight} in flight "
            f"({settings.heartbeat_threads} verifying threads each), "
            f"{batches} transactions "
            f"({args.count / max(batches, 1):.1f} heartbeats each), replays refused: {refused}/50"
        )
        print(
            f"  CPU per heartbeat: {handler_cpu / args.count * 1e6:.0f} us in the handler "
            f"processes, {machine_cpu / args.count * 1e6:.0f} us on the whole machine "
            "(the database and anything else running included)"
        )
    if http is not None and not args.json:
        print(
            f"  over HTTP ({http['via']}): {http['heartbeats_per_s']:.0f} heartbeats/s vs "
            f"{http['baseline_healthz_per_s']:.0f} GET /healthz/s = {http['ratio_vs_healthz']}x;"
            f" accepted {http['accepted']}/{args.count}, healthz ok {http['healthz_ok']}; "
            f"replicas' CPU s (heartbeats | healthz): {http['replica_cpu_s_heartbeats']} | "
            f"{http['replica_cpu_s_healthz']}"
        )
    ok = refused == 50 and (http is None or http["accepted"] == http["healthz_ok"] == args.count)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
