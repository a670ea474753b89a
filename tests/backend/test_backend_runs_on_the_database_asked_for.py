"""The `postgresql` backend tests run on PostgreSQL.

BackendSettings reads the database from KUMULUS_DATABASE_URL (a validation alias), so
`BackendSettings(database_url=...)` is silently ignored: every "postgresql" test ran on a
SQLite file, and bugs only PostgreSQL has (a value longer than its VARCHAR) went unseen."""

from __future__ import annotations

from fastapi.testclient import TestClient

from kumulus.config import BackendSettings


def test_the_backend_uses_the_database_of_the_parameter(
    backend_settings: BackendSettings, backend: TestClient, database_url: str
) -> None:
    assert backend_settings.db_url == database_url
    engine = backend.app.state.db.engine  # type: ignore[attr-defined]
    assert engine.dialect.name == database_url.split(":", 1)[0]
