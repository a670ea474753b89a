"""Proving wallet ownership: the backend issues a challenge (tagged `kumulus/wallet-link/v1`,
so its signature is valid for nothing else), the wallet signs it (raw or <Bytes>-wrapped, as
polkadot.js and Talisman sign), the challenge is spent once."""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from kumulus.backend.clock import aware, utcnow
from kumulus.backend.models import Account, WalletChallenge
from kumulus.backend.schemas import WalletChallengeOut, WalletLinkIn
from kumulus.core.errors import ConflictError, InvalidError, NotFoundError
from kumulus.core.signing import (
    Domain,
    SignatureError,
    public_key_of,
    verify_wallet_link,
    wallet_text,
)

# Challenges an account keeps (the latest): each request and each view of the consoles'
# wallet and billing pages makes one, and rows must not grow without end.
MAX_CHALLENGES = 10


def new_challenge(db: Session, account: Account, ttl: float, purpose: str) -> WalletChallengeOut:
    """A new challenge for `account` to sign (committed); its older ones past the latest
    `MAX_CHALLENGES` are dropped (signing one of those is then a 404)."""
    expires = utcnow() + timedelta(seconds=ttl)
    message = wallet_text(
        Domain.WALLET_LINK,
        f"link this wallet to Kumulus account {account.email}{purpose} "
        f"(nonce {secrets.token_hex(16)}, valid until {expires:%Y-%m-%dT%H:%M:%SZ})",
    )
    row = WalletChallenge(account_id=account.id, message=message, expires_at=expires)
    db.add(row)
    db.flush()
    latest = (
        select(WalletChallenge.id)
        .where(WalletChallenge.account_id == account.id)
        .order_by(WalletChallenge.id.desc())
        .limit(MAX_CHALLENGES)
    )
    db.execute(
        delete(WalletChallenge).where(
            WalletChallenge.account_id == account.id, WalletChallenge.id.not_in(latest)
        )
    )
    db.commit()
    return WalletChallengeOut(challenge_id=row.id, message=message, expires_at=expires)


def spend_challenge(db: Session, account: Account, body: WalletLinkIn) -> None:
    """Check the signature of the account's challenge and spend the challenge (in the
    caller's transaction; the caller records the link and commits); raises otherwise."""
    challenge = db.get(WalletChallenge, body.challenge_id)
    if challenge is None or challenge.account_id != account.id:
        raise NotFoundError(f"no challenge {body.challenge_id}")
    if challenge.used_at is not None or aware(challenge.expires_at) < utcnow():
        raise ConflictError("challenge used or expired: ask for a new one", code="challenge_spent")
    try:
        public_key_of(body.address)
        verify_wallet_link(body.address, challenge.message, body.signature)
    except SignatureError as exc:
        raise InvalidError(f"wallet not linked: {exc.reason}", code="bad_signature") from exc
    # A challenge links one wallet once, even when two requests race with it.
    claimed = db.execute(
        update(WalletChallenge)
        .where(WalletChallenge.id == challenge.id, WalletChallenge.used_at.is_(None))
        .values(used_at=utcnow())
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        db.rollback()
        raise ConflictError("challenge already used", code="challenge_spent")
