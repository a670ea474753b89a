"""Database engine, sessions and migrations (applied on start; SQLite or PostgreSQL)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from kumulus.backend import lease_fence
from kumulus.core.money import hourly_price


def _price_within(
    cpu: str, memory: int, disk: int, price_cpu: int, price_mem: int, price_disk: int, most: int
) -> bool:
    """Whether a VM of this size costs at most `most` planck per hour at these prices."""
    return hourly_price(float(cpu), memory, disk, price_cpu, price_mem, price_disk) <= most


def make_engine(url: str, pool_size: int = 10, max_overflow: int = 20) -> Engine:
    """An engine for `url`; on PostgreSQL at most `pool_size + max_overflow` connections
    (N replicas need N times that under the server's max_connections)."""
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
            # The scheduler's exact price predicate (scheduler._PRICE_WITHIN): SQLite has no
            # integers wider than 64 bits, so it asks the function every charge uses.
            dbapi_conn.create_function("kumulus_price_within", 7, _price_within, deterministic=True)

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=max_overflow,
        # Ours first: the operator's PGOPTIONS (which libpq ignores once `options` is
        # given) and options given in the URL come after them and win.
        connect_args={
            "options": " ".join(
                [
                    PG_SESSION_OPTIONS,
                    os.environ.get("PGOPTIONS", ""),
                    str(make_url(url).query.get("options", "")),
                ]
            ).strip()
        },
    )


# Planner costs for this backend's sessions. The default random_page_cost (4) prices an
# index probe as a disk seek; the backend's tables (balances, hosts, VMs) are small enough
# to stay in memory, where a probe costs little more than a sequential page (1.1 is the
# usual figure for SSDs and cached data). With 4, the balance locks of a placement batch
# (a few hundred keys joined from JSON) were a hash join over a sequential scan of every
# balance until the table passed ~20,000 rows: 4.7 ms per batch at 13,000 balances
# against 1.1 ms probing the primary key (bench/scheduler).
PG_SESSION_OPTIONS = "-c random_page_cost=1.1"


@contextmanager
def driver_cursor(db: Session) -> Iterator[Any]:
    """A cursor of the driver connection (psycopg, PostgreSQL) under `db`'s, in its
    transaction: for the placer's hot statements (psycopg's `%(name)s` placeholders;
    values as psycopg adapts them, results as it returns them, NUMERIC as Decimal). Run
    through SQLAlchemy, a statement cost the placer 60-100 us more of Python (execution
    context, result metadata and row processing): about a tenth of a placement's time,
    over the ten statements of each batch. The driver prepares a statement run often."""
    with db.connection().connection.driver_connection.cursor() as cursor:  # type: ignore[union-attr]
        yield cursor


def upsert_insert(session: Session, table: Any) -> Any:
    """An INSERT with ON CONFLICT support (`on_conflict_do_nothing/update`, `excluded`) for
    the session's database: the PostgreSQL and SQLite dialects spell it alike."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def alembic_config(connection: Any = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("kumulus.backend") / "migrations"))
    cfg.attributes["connection"] = connection
    return cfg


# The advisory lock every backend process takes around its migrations (any fixed number:
# it names the lock within the database; "kumulus" in ASCII).
MIGRATION_LOCK = 0x6B756D756C7573


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent; safe on every start, and when
    several processes start at once on one database: on PostgreSQL they migrate one after
    the other under a transaction-scoped advisory lock, so the first applies the revisions
    and the others find the schema at head). Replicas share PostgreSQL; a SQLite file
    serves one backend process."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Held until this transaction commits: migrations are transactional DDL on
            # PostgreSQL, so a waiting replica sees either nothing or every revision.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        command.upgrade(alembic_config(connection), "head")


class Database:
    def __init__(self, url: str, pool_size: int = 10, max_overflow: int = 20) -> None:
        self.engine = make_engine(url, pool_size, max_overflow)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        lease_fence.install(self.sessions)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as session:
            yield session
