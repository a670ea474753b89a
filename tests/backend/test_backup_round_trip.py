"""`kumulus backend backup` / `restore`: accounts, hosts, VMs and the ledger come back
exactly as they were, on SQLite and on PostgreSQL; a restore onto a backend with other
keys is refused unless forced; a restore stops payouts until reconciled."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kumulus.backend import backups, ledger_check
from kumulus.backend import settlement_state as state
from kumulus.backend.db import Database
from kumulus.cli import app
from kumulus.config import BackendSettings
from tests.backend.backup_fixtures import populate, scratch_postgres, settings_for, snapshot
from tests.backend.billing_fixtures import UNIT, account, earnings


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'kumulus.db'}"
    else:
        yield from scratch_postgres()


def test_a_restore_gives_back_what_was_backed_up(tmp_path: Path, db_url: str) -> None:
    settings = settings_for(tmp_path / "data", db_url)
    db = Database(db_url)
    try:
        populate(db)
        before = snapshot(db)
        assert before["vms"] and before["ledger_entries"] and before["hosts"]
        manifest = backups.backup(settings, tmp_path / "kumulus.backup")
        assert manifest.addresses == backups.key_addresses(settings)
        assert (tmp_path / "kumulus.backup").stat().st_mode & 0o077 == 0
        # Life goes on after the backup, then the database is restored.
        with db.session() as s:
            earnings(s, account(s, "provider").id, 3 * UNIT)
            s.commit()
        assert snapshot(db) != before
        db.engine.dispose()
        backups.restore(settings, tmp_path / "kumulus.backup")
        assert snapshot(db) == before
        with db.session() as s:
            assert ledger_check.violations(s) == []
            assert state.get(s, state.BLOCKED_RESTORE) is not None  # payouts wait
    finally:
        db.engine.dispose()


def test_a_restore_onto_other_keys_is_refused_unless_forced(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a' / 'kumulus.db'}"
    settings = settings_for(tmp_path / "a", url)
    populate(Database(url))
    backups.backup(settings, tmp_path / "b.backup")
    other = settings_for(tmp_path / "other", f"sqlite:///{tmp_path / 'other' / 'kumulus.db'}")
    with pytest.raises(backups.BackupError, match="keys are not the backup's"):
        backups.restore(other, tmp_path / "b.backup")
    assert not (tmp_path / "other" / "kumulus.db").exists()
    backups.restore(other, tmp_path / "b.backup", force=True)
    assert snapshot(Database(other.db_url)) == snapshot(Database(url))


def test_the_commands_back_up_and_restore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'data' / 'kumulus.db'}"
    settings = settings_for(tmp_path / "data", url)
    populate(Database(url))
    monkeypatch.setenv("KUMULUS_BACKEND_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("KUMULUS_DATABASE_URL", raising=False)
    assert BackendSettings().db_url == url
    runner = CliRunner()
    done = runner.invoke(app, ["backend", "backup", str(tmp_path / "x.backup")])
    assert done.exit_code == 0, done.output
    assert backups.key_addresses(settings)["payout"] in done.output
    done = runner.invoke(app, ["backend", "restore", str(tmp_path / "x.backup")])
    assert done.exit_code == 0, done.output
    (tmp_path / "junk").write_text("not a backup")
    done = runner.invoke(app, ["backend", "restore", str(tmp_path / "junk")])
    assert done.exit_code == 1 and "is not a Kumulus backup" in done.output
