"""A backend with something in every table a backup must keep, its keys, and a scratch
PostgreSQL database of its own (a restore replaces a whole database: never a shared one)."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from kumulus.backend import ledger
from kumulus.backend.billing import Terms
from kumulus.backend.clock import utcnow
from kumulus.backend.db import Database, migrate
from kumulus.config import BackendSettings
from kumulus.core.signing import new_mnemonic, write_secret_file
from tests.backend.billing_fixtures import UNIT, account, earnings, host, placed
from tests.conftest import POSTGRES

KEPT_TABLES = ("accounts", "provider_profiles", "hosts", "vms", "ledger_entries", "balances")


def scratch_postgres() -> Iterator[str]:
    """A database created for one test and dropped after it (needs root, as CI runs)."""
    if not POSTGRES:
        if os.environ.get("KUMULUS_E2E_REQUIRED"):
            pytest.fail("PostgreSQL required: set KUMULUS_TEST_POSTGRES_URL")
        pytest.skip("no PostgreSQL configured (KUMULUS_TEST_POSTGRES_URL)")
    url = make_url(POSTGRES)
    name = f"kumulus_scratch_{secrets.token_hex(4)}"
    made = subprocess.run(
        ["runuser", "-u", "postgres", "--", "createdb", "-O", str(url.username), name],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if made.returncode != 0:
        pytest.skip(f"cannot create a scratch database: {made.stderr.strip()}")
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", "dropdb", "--if-exists", "--force", name],
            capture_output=True, check=False,
        )  # fmt: skip


def settings_for(data_dir: Path, url: str) -> BackendSettings:
    settings = BackendSettings(data_dir=data_dir, KUMULUS_DATABASE_URL=url)
    for path in (
        settings.key_file,
        settings.payout_key_file,
        settings.deposit_key_file,
        settings.anchor_key_file,
    ):
        assert path is not None
        if not path.exists():
            write_secret_file(path, new_mnemonic())
    return settings


def populate(db: Database) -> int:
    """A provider with earnings and a host, a developer with a running VM on it (its hold
    taken from deposit-funded money); returns the provider's account id."""
    migrate(db.engine)
    with db.session() as s:
        provider = account(s, "provider")
        dev = account(s, "developer")
        on = host(s, provider)
        earnings(s, provider.id, 7 * UNIT)
        ledger.transfer(s, (ledger.CHAIN, None), (ledger.DEVELOPER, dev.id), 5 * UNIT, "deposit")
        s.commit()
        terms = Terms(fee_bps=1000, window=3600.0)
        placed(s, dev, on, utcnow() - timedelta(minutes=5), terms)
        return provider.id


def snapshot(db: Database) -> dict[str, Any]:
    """Every row of the tables a restore must give back, in a stable order."""
    out: dict[str, Any] = {}
    with db.engine.connect() as conn:
        for table in KEPT_TABLES:
            rows = conn.execute(text(f"SELECT * FROM {table}")).all()
            out[table] = sorted(tuple(str(v) for v in row) for row in rows)
    return out
