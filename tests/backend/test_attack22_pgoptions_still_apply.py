"""The backend's PostgreSQL sessions still take the operator's PGOPTIONS.

libpq reads the PGOPTIONS environment variable only when the connection names no
`options` of its own. make_engine now always passes `options` (its random_page_cost,
merged with the URL's `options` only), so a deployment that sets, say, a statement or
lock timeout for the backend through PGOPTIONS silently loses it: it ran with it before.
"""

from __future__ import annotations

import os

import pytest
from sqlalchemy import text

from kumulus.backend.db import make_engine

POSTGRES = os.environ.get("KUMULUS_TEST_POSTGRES_URL")


@pytest.mark.skipif(not POSTGRES, reason="no PostgreSQL configured (KUMULUS_TEST_POSTGRES_URL)")
def test_pgoptions_from_the_environment_still_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=4321")
    engine = make_engine(str(POSTGRES))
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "4321ms"
            # ... and the backend's own planner setting still applies too.
            assert conn.execute(text("SHOW random_page_cost")).scalar() == "1.1"
    finally:
        engine.dispose()
