"""Job `reputation`: recompute every host's reputation and uptimes (once per
`reputation_interval` across all backend processes: the result is the same whoever does it)."""

from __future__ import annotations

from kumulus.backend import reputation
from kumulus.backend.db import Database


def recompute(db: Database) -> int:
    with db.session() as s:
        return reputation.recompute(s)
