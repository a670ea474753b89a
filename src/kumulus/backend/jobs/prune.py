"""Job `prune`: drop spent nonces and heartbeats older than the retention."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from kumulus.backend.db import Database
from kumulus.backend.heartbeats import prune_heartbeats
from kumulus.backend.nonces import prune_nonces
from kumulus.config import BackendSettings


@dataclass
class PruneReport:
    nonces: int = 0
    heartbeats: int = 0


def prune(db: Database, settings: BackendSettings) -> PruneReport:
    with db.session() as s:
        report = PruneReport(nonces=prune_nonces(s))
        report.heartbeats = prune_heartbeats(s, timedelta(hours=settings.heartbeat_retention_hours))
        s.commit()
    return report
