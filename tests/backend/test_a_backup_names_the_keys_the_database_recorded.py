"""A backup names the keys its database belongs to from the database itself (backend_keys,
what every replica is held to), not only from the key files of whoever runs the command:
taken without access to the key files, it still refuses a restore onto other keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from kumulus.backend import backend_keys, backups
from kumulus.backend.db import Database
from kumulus.config import BackendSettings
from tests.backend.backup_fixtures import populate, settings_for


def test_a_backup_taken_without_the_key_files_still_names_the_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live' / 'kumulus.db'}"
    live = settings_for(tmp_path / "live", url)
    db = Database(url)
    populate(db)
    files = {
        backend_keys.BACKEND: live.key_file,
        backend_keys.PAYOUT: live.payout_key_file,
        backend_keys.ANCHOR: live.anchor_key_file,
    }
    addresses = {}
    for role, path in files.items():
        assert path is not None
        addresses[role] = backend_keys.key(db, role, path).ss58_address  # as replicas do
    db.engine.dispose()

    # An operator's shell without the service's credentials: no key file at these paths.
    shell = BackendSettings(data_dir=tmp_path / "shell", KUMULUS_DATABASE_URL=url)
    assert shell.key_file is not None and not shell.key_file.exists()
    manifest = backups.backup(shell, tmp_path / "b.backup")
    assert {role: manifest.addresses.get(role) for role in addresses} == addresses

    other = settings_for(tmp_path / "other", f"sqlite:///{tmp_path / 'other' / 'kumulus.db'}")
    with pytest.raises(backups.BackupError, match="keys are not the backup's"):
        backups.restore(other, tmp_path / "b.backup")
    backups.restore(live, tmp_path / "b.backup")  # the keys it belongs to: accepted
