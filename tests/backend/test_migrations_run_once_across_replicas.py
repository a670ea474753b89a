"""Replicas starting together on an empty PostgreSQL database migrate one after the other
(an advisory lock): every one starts, and the schema is at head exactly once."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from multiprocessing.synchronize import Barrier

import psycopg
import pytest
from alembic.script import ScriptDirectory
from bench.common import scratch_schema

from kumulus.backend.db import alembic_config
from tests.conftest import POSTGRES

REPLICAS = 3


@pytest.fixture
def empty_schema() -> Iterator[tuple[str, str]]:
    """A database URL whose search path is a new, empty schema; and that schema."""
    if not POSTGRES:
        pytest.skip("no PostgreSQL configured (KUMULUS_TEST_POSTGRES_URL)")
    with scratch_schema(POSTGRES, "t") as found:
        yield found


def _start(url: str, ready: Barrier) -> None:
    from kumulus.backend.db import Database, migrate

    db = Database(url)
    ready.wait(timeout=60)  # all three connect, then migrate at the same moment
    migrate(db.engine)


def test_three_replicas_migrate_an_empty_database_at_once(
    empty_schema: tuple[str, str],
) -> None:
    url, schema = empty_schema
    spawn = multiprocessing.get_context("spawn")
    ready = spawn.Barrier(REPLICAS)
    replicas = [spawn.Process(target=_start, args=(url, ready)) for _ in range(REPLICAS)]
    for replica in replicas:
        replica.start()
    for replica in replicas:
        replica.join(timeout=120)
    assert [r.exitcode for r in replicas] == [0] * REPLICAS
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert POSTGRES
    with psycopg.connect(POSTGRES) as conn:
        versions = conn.execute(f'SELECT version_num FROM "{schema}".alembic_version').fetchall()
    assert versions == [(head,)]
