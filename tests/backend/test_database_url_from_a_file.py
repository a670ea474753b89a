"""The database URL can come from an owner-only file (a systemd credential or a container
secret), so that its password is in no process's environment; the variable wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from kumulus.config import BackendSettings
from kumulus.core.signing import SecretFileError, write_secret_file


def test_the_url_is_read_from_the_file(tmp_path: Path) -> None:
    url_file = tmp_path / "database-url"
    write_secret_file(url_file, "postgresql://kumulus:secret@db.example.com/kumulus")
    settings = BackendSettings(data_dir=tmp_path, database_url_file=url_file)
    assert settings.db_url == "postgresql://kumulus:secret@db.example.com/kumulus"
    both = BackendSettings(
        data_dir=tmp_path, database_url_file=url_file, KUMULUS_DATABASE_URL="sqlite:///x.db"
    )
    assert both.db_url == "sqlite:///x.db"


def test_a_file_others_can_read_is_refused(tmp_path: Path) -> None:
    url_file = tmp_path / "database-url"
    url_file.write_text("postgresql://kumulus:secret@db.example.com/kumulus\n")
    url_file.chmod(0o644)
    with pytest.raises(SecretFileError, match="chmod 600"):
        _ = BackendSettings(data_dir=tmp_path, database_url_file=url_file).db_url
