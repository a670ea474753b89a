"""Job `prune`: drop spent nonces, heartbeats older than the retention and ended
rate-limit windows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from kumulus.backend.db import Database
from kumulus.backend.heartbeats import prune_heartbeats
from kumulus.backend.nonces import prune_nonces
from kumulus.backend.rate_counters import prune_rate_counters
from kumulus.config import BackendSettings


@dataclass
class PruneReport:
    nonces: int = 0
    heartbeats: int = 0
    rate_counters: int = 0


def prune(db: Database, settings: BackendSettings) -> PruneReport:
    with db.session() as s:
        report = PruneReport(nonces=prune_nonces(s))
        report.heartbeats = prune_heartbeats(s, timedelta(hours=settings.heartbeat_retention_hours))
        report.rate_counters = prune_rate_counters(s)
        s.commit()
    return report
