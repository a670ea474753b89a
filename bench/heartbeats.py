"""Signed heartbeats accepted per second by the backend's handler, called from a pool of
threads as the server's thread pool calls it: sr25519 verification and parsing in each
thread, then the group-commit writer (nonce claim, heartbeat row, uptime, host update,
VM inventory) stores what arrived together in one transaction; each call returns once its
heartbeat is committed.

Baselines in the same run: bare one-row INSERT + COMMIT on the same database, and sr25519
verification alone. Target: >= 1,000/s (10,000 hosts at a 10 s interval).

    python -m bench.heartbeats [--count 3000] [--hosts 100] [--threads 32]
                               [--database-url URL] [--json]
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import delete

from bench.common import add_hosts, insert_commit_rate, remove_hosts
from kumulus.backend.api.routes.agents import accept_heartbeat
from kumulus.backend.db import Database, migrate
from kumulus.backend.heartbeats import HeartbeatWriter
from kumulus.backend.models import Heartbeat, HostUptime, SeenNonce
from kumulus.config import BackendSettings
from kumulus.core.errors import KumulusError
from kumulus.core.signing import (
    Domain,
    NonceCache,
    keypair_from_mnemonic,
    new_mnemonic,
    sign_envelope,
    verify_envelope,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    wallets = [keypair_from_mnemonic(new_mnemonic()) for _ in range(10)]
    suffix = secrets.token_hex(4)
    host_ids = [f"h{suffix}{i:06d}" for i in range(args.hosts)]
    payload = {
        "kind": "health",
        "agentVersion": "bench",
        "host": {"cpuPercent": 12.5, "memoryPercent": 40.0, "load": [0.1, 0.2, 0.3]},
        "vms": {"total": 3, "running": 3, "unhealthy": 0},
        "vmStats": [],
    }
    envelopes = [
        sign_envelope(
            wallets[i % len(wallets)],
            {**payload, "hostId": host_ids[i % args.hosts]},
            domain=Domain.HEARTBEAT,
        )
        for i in range(args.count)
    ]

    t0 = time.perf_counter()
    nonces = NonceCache()
    for env in envelopes:
        verify_envelope(env, nonces, domain=Domain.HEARTBEAT)
    verify_rate = len(envelopes) / (time.perf_counter() - t0)

    with tempfile.TemporaryDirectory(prefix="kumulus-bench-") as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        settings = BackendSettings(data_dir=Path(tmp), database_url=url)
        db = Database(url)
        migrate(db.engine)
        add_hosts(
            db, suffix, host_ids, lambda i: wallets[i % len(wallets)].ss58_address, online=False
        )
        insert_rate = insert_commit_rate(db, suffix, min(args.count, 3000))

        writer = HeartbeatWriter(db, ttl=settings.heartbeat_ttl)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(lambda env: accept_heartbeat(env, writer, settings), envelopes))
        rate = len(envelopes) / (time.perf_counter() - t0)
        batches = writer.batches

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
        "threads": args.threads,
        "transactions": batches,
        "replays_refused": f"{refused}/50",
        "target_per_s": 1000,
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
            f"INSERT baseline; target >= 1000/s)"
        )
        print(
            f"  {args.threads} calling threads, {batches} transactions "
            f"({args.count / max(batches, 1):.1f} heartbeats each), replays refused: {refused}/50"
        )
    return 0 if refused == 50 else 1


if __name__ == "__main__":
    sys.exit(main())
