"""Scratch schemas (a PostgreSQL schema per test or bench run) left behind by killed runs
are dropped by the next run once they are hours old; a fresh one, possibly another run's,
is left alone."""

from __future__ import annotations

import time

import psycopg
import pytest
from bench.common import STALE_AFTER, scratch_schema

from tests.conftest import POSTGRES


def _schemas(prefix: str) -> set[str]:
    assert POSTGRES is not None
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (prefix,)
        )
        return {row[0] for row in rows}


def test_stale_scratch_schemas_go_fresh_ones_stay() -> None:
    if not POSTGRES:
        pytest.skip("no PostgreSQL configured (KUMULUS_TEST_POSTGRES_URL)")
    now = int(time.time())
    stale = f"stale_{now - STALE_AFTER - 60}_0123abcd"
    recent = f"stale_{now - 60}_4567abcd"
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        for name in (stale, recent):
            conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        with scratch_schema(POSTGRES, "stale") as (url, mine):
            assert f"search_path%3D{mine}" in url
            assert _schemas("stale_") == {recent, mine}
        assert _schemas("stale_") == {recent}
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            for name in (stale, recent):
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
