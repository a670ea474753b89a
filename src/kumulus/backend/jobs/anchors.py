"""Job `anchors`: every `anchor_interval`, digest the period and put it on chain.

The job runs under its exclusive lease (`anchors`, short, renewed and fenced like every
job's: core/jobs.py), so one process anchors at a time and a holder that lost the lease
commits no anchor and sends no remark. When a digest is due is read from the database (the
last anchor's period end), not from a process's clock, so it does not matter which process
holds the lease from one run to the next. Between digests, a run retries anchors that could
not be sent. Anchors go only on the pinned chain (backend/chain_identity.py): a digest on
another chain would prove nothing to someone checking the platform's chain."""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session
from substrateinterface import Keypair

from kumulus.backend import anchors, chain_identity
from kumulus.backend.clock import aware, utcnow
from kumulus.backend.db import Database
from kumulus.backend.models import Anchor
from kumulus.chain.client import ChainClient

LEASE = "anchors"


class AnchorJob:
    def __init__(self, db: Database, chain: ChainClient, key: Keypair, interval: float) -> None:
        self._db = db
        self._chain = chain
        self._key = key
        self._interval = interval
        self._started = time.monotonic()  # no anchor yet: the first one interval after start

    def __call__(self, force: bool = False) -> int:
        """Returns how many anchors were put on chain this run."""
        genesis = chain_identity.verify(self._db, self._chain)
        if genesis is None:
            return 0
        with self._db.session() as s:
            if force or self._due(s):
                anchors.build(s)
            return anchors.submit_pending(s, self._chain, self._key, genesis)

    def _due(self, s: Session) -> bool:
        last = s.scalar(select(Anchor.period_end).order_by(Anchor.id.desc()).limit(1))
        if last is None:
            return time.monotonic() - self._started >= self._interval
        return utcnow() - aware(last) >= timedelta(seconds=self._interval)
