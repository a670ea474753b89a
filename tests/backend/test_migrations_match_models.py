"""The Alembic migrations build exactly the schema the models describe (no drift)."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import inspect

from kumulus.backend.models import Base

# Indexes with a DESC column: autogenerate can only compare them approximately, so it
# always reports them; checked by name instead.
_EXPRESSION_INDEXES = {"ix_hosts_tier_price_load", "ix_hosts_region_tier_price_load"}


def test_migrated_schema_matches_models(backend: TestClient) -> None:
    engine = backend.app.state.db.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        indexes = {ix["name"] for ix in inspect(conn).get_indexes("hosts")}
    assert indexes >= _EXPRESSION_INDEXES
    diff = [
        d
        for d in diff
        if not (d[0] in ("add_index", "remove_index") and d[1].name in _EXPRESSION_INDEXES)
        # Bench scratch tables left on a shared database are not ours.
        and not (d[0] == "remove_table" and d[1].name.startswith("bench_"))
    ]
    assert diff == []
