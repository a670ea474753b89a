"""Backend replicas as production runs them, for the tests of replicas (behind nginx, one
killed, the chain jobs moving): one PostgreSQL schema of their own, one set of platform
keys made once by `kumulus backend init-keys` and loaded by every replica, all started at
once."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from bench.common import scratch_schema

from tests.conftest import POSTGRES
from tests.e2e.agent_process import BackendProcess

KEYS = ("backend", "payout", "anchor", "deposit")


@contextmanager
def replica_schema() -> Iterator[str]:
    """A database URL on a schema of its own in the test PostgreSQL, dropped afterwards."""
    if not POSTGRES:
        if os.environ.get("KUMULUS_E2E_REQUIRED"):
            pytest.fail("PostgreSQL required: set KUMULUS_TEST_POSTGRES_URL")
        pytest.skip("replicas share PostgreSQL: set KUMULUS_TEST_POSTGRES_URL")
    with scratch_schema(POSTGRES, "t") as (url, _):
        yield url


def shared_keys(directory: Path) -> dict[str, str]:
    """The platform's keys, made once (`kumulus backend init-keys`, as an operator does):
    the environment that makes a replica load them (the unit passes them as credentials)."""
    subprocess.run(
        [sys.executable, "-m", "kumulus.cli", "backend", "init-keys", str(directory)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    names = {"backend": "KEY_FILE"} | {k: f"{k.upper()}_KEY_FILE" for k in KEYS[1:]}
    return {f"KUMULUS_BACKEND_{v}": str(directory / f"{k}-mnemonic") for k, v in names.items()}


def start_all(replicas: list[BackendProcess]) -> None:
    """Start every replica at once on the (possibly empty) database: migrations must not
    race. Three processes importing at once on 2 shared cores take a while."""
    for replica in replicas:
        replica.start_timeout = 180
    with ThreadPoolExecutor(len(replicas)) as pool:
        list(pool.map(BackendProcess.start, replicas))


def stop_all(replicas: list[BackendProcess]) -> None:
    for replica in replicas:
        replica.stop()


def owner_pid(owner: str) -> int:
    """The process id in a lease owner (host:pid:runner, core/jobs.default_owner)."""
    return int(owner.split(":")[1])
