"""Job `anchors`: every `anchor_interval`, digest the period and put it on chain.

One process anchors: it holds the `anchors` lease, renewing it every run and never
releasing it, so the digest interval is counted by that one process's clock (several
processes each digesting on their own clock would anchor more often). Another process takes
over once the holder has been silent for LEASE_TTL. Between digests, a run retries anchors
that could not be sent. Anchors go only on the pinned chain (backend/chain_identity.py): a
digest on another chain would prove nothing to someone checking the platform's chain."""

from __future__ import annotations

import time

from substrateinterface import Keypair

from kumulus.backend import anchors, chain_identity, leases
from kumulus.backend.db import Database
from kumulus.chain.client import ChainClient
from kumulus.core.jobs import default_owner

LEASE = "anchors"
LEASE_TTL = 300.0


class AnchorJob:
    def __init__(
        self, db: Database, chain: ChainClient, key: Keypair, interval: float, owner: str = ""
    ) -> None:
        self._db = db
        self._chain = chain
        self._key = key
        self._interval = interval
        self.owner = owner or default_owner()
        self._last = time.monotonic()  # the first digest after one full interval

    def __call__(self, force: bool = False) -> int:
        """Returns how many anchors were put on chain this run."""
        genesis = chain_identity.verify(self._db, self._chain)
        if genesis is None:
            return 0
        with self._db.session() as s:
            if leases.acquire(s, LEASE, self.owner, LEASE_TTL) is None:
                return 0
            now = time.monotonic()
            if force or now - self._last >= self._interval:
                self._last = now
                anchors.build(s)
            return anchors.submit_pending(s, self._chain, self._key, genesis)
