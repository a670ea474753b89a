"""Replay protection shared by every backend process: nonces live in the database."""

from __future__ import annotations

import time

from sqlalchemy import delete, text
from sqlalchemy.orm import Session

from kumulus.backend.models import SeenNonce

# One statement, no savepoint: ON CONFLICT DO NOTHING is understood by SQLite (>= 3.24)
# and PostgreSQL; the row count says whether the nonce was new.
_CLAIM = text(
    "INSERT INTO seen_nonces (signer, nonce, expires_at) VALUES (:signer, :nonce, :expires)"
    " ON CONFLICT DO NOTHING"
)


class DbNonceStore:
    """NonceStore over the `seen_nonces` table, inside the caller's transaction: the
    nonce is spent only if that transaction commits."""

    def __init__(self, session: Session, ttl: float) -> None:
        self.session = session
        self.ttl = ttl

    def check_and_store(self, signer: str, nonce: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        result = self.session.execute(
            _CLAIM, {"signer": signer, "nonce": nonce, "expires": now + self.ttl}
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def prune_nonces(session: Session, now: float | None = None) -> int:
    now = time.time() if now is None else now
    result = session.execute(delete(SeenNonce).where(SeenNonce.expires_at < now))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
