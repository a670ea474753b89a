"""What the database benchmarks share: simulated hosts, the bare-INSERT / UPDATE baselines,
and scratch schemas on PostgreSQL (the tests' too)."""

from __future__ import annotations

import os
import queue
import re
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Integer, MetaData, String, Table, delete, insert, update
from sqlalchemy.orm import Session

from kumulus.backend import ledger
from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database
from kumulus.backend.models import Account, Host

GIB = 1 << 30


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy so far (all cores; /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(f) for f in fields]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def results_of(children: Sequence[Any], results: Any, what: str, limit: float = 600) -> list[Any]:
    """One result per child process (multiprocessing Processes putting theirs on the
    queue `results`), joined; a child that fails, or `limit` seconds without them all,
    kills them all and raises RuntimeError naming `what` (no 10-minute wait on a dead
    child)."""
    done: list[Any] = []
    deadline = time.monotonic() + limit
    while len(done) < len(children):
        try:
            done.append(results.get(timeout=1))
        except queue.Empty:
            if any(c.exitcode for c in children) or time.monotonic() > deadline:
                for child in children:
                    child.kill()
                raise RuntimeError(f"a {what} process failed") from None
    for child in children:
        child.join()
    if any(c.exitcode for c in children):
        raise RuntimeError(f"a {what} process failed")
    return done


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) the process `pid` has used so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def add_hosts(
    db: Database, suffix: str, ids: list[str], wallet: Callable[[int], str], online: bool
) -> None:
    """One provider account `bench-<suffix>` owning hosts `ids` (8 vCPU, 32g, 500g each)."""
    with db.session() as s:
        account = Account(
            email=f"bench-{suffix}@example.com",
            password_hash="x",
            role="provider",
            created_at=utcnow(),
        )
        s.add(account)
        s.flush()
        now = utcnow()
        s.execute(
            insert(Host),
            [
                {
                    "id": host_id,
                    "account_id": account.id,
                    "wallet_address": wallet(i),
                    "api_url": "http://127.0.0.1:1",
                    "public_ip": "127.0.0.1",
                    "region": ("eu", "us", "ap")[i % 3],
                    "cpu": 8.0,
                    "memory": 32 * GIB,
                    "disk": 500 * GIB,
                    "disk_quota": True,
                    "isolated": True,
                    "agent_version": "bench",
                    "registered_at": now,
                    "last_heartbeat_at": now if online else None,
                    # The benches sign heartbeats with the wallet, as hosts registered
                    # before host keys do.
                    "host_key_state": "legacy",
                }
                for i, host_id in enumerate(ids)
            ],
        )
        s.commit()


def touch_hosts(db: Database, ids: list[str]) -> None:
    """Mark hosts `ids` as just heard from."""
    with db.session() as s:
        s.execute(update(Host).where(Host.id.in_(ids)).values(last_heartbeat_at=utcnow()))
        s.commit()


def remove_hosts(db: Database, suffix: str, ids: list[str]) -> None:
    """Leave a shared database (--database-url) as it was."""
    with db.session() as s:
        s.execute(delete(Host).where(Host.id.in_(ids)))
        s.execute(delete(Account).where(Account.email == f"bench-{suffix}@example.com"))
        s.commit()


def insert_commit_rate(db: Database, suffix: str, count: int) -> float:
    """Baseline: one-row INSERT + COMMIT transactions per second on the same database."""
    scratch = Table(
        f"bench_scratch_{suffix}",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("v", String(32)),
    )
    scratch.create(db.engine)
    t0 = time.perf_counter()
    with db.engine.connect() as conn:
        for i in range(count):
            conn.execute(insert(scratch).values(v=str(i)))
            conn.commit()
    rate = count / (time.perf_counter() - t0)
    scratch.drop(db.engine)
    return rate


def update_chunked_seconds(db: Database, suffix: str, count: int, chunk: int) -> float:
    """Baseline: seconds for `count` one-row UPDATEs (one statement per row) on a scratch
    table of `count` rows, one COMMIT per `chunk` rows, on the same database."""
    scratch = Table(
        f"bench_scratch_{suffix}",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("v", String(32)),
    )
    scratch.create(db.engine)
    with db.engine.connect() as conn:
        conn.execute(insert(scratch), [{"id": i, "v": ""} for i in range(count)])
        conn.commit()
        t0 = time.perf_counter()
        for start in range(0, count, chunk):
            for i in range(start, min(start + chunk, count)):
                conn.execute(update(scratch).where(scratch.c.id == i).values(v=str(i)))
            conn.commit()
        elapsed = time.perf_counter() - t0
    scratch.drop(db.engine)
    return elapsed


# A scratch schema older than this was left by a run that was killed (no test or bench
# run lasts hours): the next one made with its prefix drops it.
STALE_AFTER = 6 * 3600


@contextmanager
def scratch_schema(url: str, prefix: str) -> Iterator[tuple[str, str]]:
    """A new, empty schema on the PostgreSQL database `url` (libpq's form or
    SQLAlchemy's), and `url` with it as its search path; dropped afterwards. Its name
    (`<prefix>_<unix time>_<random>`) carries its creation time, so that schemas of
    `prefix` left by killed runs are dropped once STALE_AFTER has passed."""
    import psycopg

    now = int(time.time())
    schema = f"{prefix}_{now}_{secrets.token_hex(4)}"
    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    named = re.compile(rf"{re.escape(prefix)}_(\d{{10}})_[0-9a-f]{{8}}")
    with psycopg.connect(plain, autocommit=True) as conn:
        for (name,) in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (prefix + "_",)
        ).fetchall():
            made = named.fullmatch(name)
            if made is not None and int(made.group(1)) < now - STALE_AFTER:
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in url else "?"
    try:
        yield f"{url}{sep}options=-csearch_path%3D{schema}", schema
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def fresh_schema(url: str | None) -> Iterator[str | None]:
    """`url` with a new, empty schema as its search path, dropped afterwards: each run
    starts from nothing, and its backend records its own keys (a database remembers the
    keys of the backend that used it first, and refuses a backend with others)."""
    if url is None or not url.startswith("postgresql"):
        yield url
        return
    with scratch_schema(url, "bench") as (scoped, _):
        yield scoped


def add_funded_developers(s: Session, suffix: str, count: int, funds: int) -> list[int]:
    """`count` developer accounts (no commit), each credited `funds` planck from the chain
    as a deposit would be; their ids."""
    now = utcnow()
    dev_ids = list(
        s.scalars(
            insert(Account).returning(Account.id),
            [
                {
                    "email": f"bench-{suffix}-dev{i}@example.com",
                    "password_hash": "x",
                    "role": "developer",
                    "created_at": now,
                }
                for i in range(count)
            ],
        )
    )
    for dev in dev_ids:
        ledger.transfer(s, (ledger.CHAIN, None), (ledger.DEVELOPER, dev), funds, "deposit")
    return dev_ids
