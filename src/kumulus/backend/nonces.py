"""Replay protection shared by every backend process: nonces live in the database."""

from __future__ import annotations

import time

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kumulus.backend.models import SeenNonce


class DbNonceStore:
    """NonceStore over the `seen_nonces` table. The insert happens in a savepoint of the
    caller's transaction, so a replay (duplicate key) fails just that insert."""

    def __init__(self, session: Session, ttl: float) -> None:
        self.session = session
        self.ttl = ttl

    def check_and_store(self, signer: str, nonce: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        try:
            with self.session.begin_nested():
                self.session.add(SeenNonce(signer=signer, nonce=nonce, expires_at=now + self.ttl))
        except IntegrityError:
            return False
        return True


def prune_nonces(session: Session, now: float | None = None) -> int:
    now = time.time() if now is None else now
    result = session.execute(delete(SeenNonce).where(SeenNonce.expires_at < now))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
