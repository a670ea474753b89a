"""Developers' saved SSH public keys (parsed and fingerprinted; one copy of a key per
account)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kumulus.backend import paging, quotas
from kumulus.backend.clock import utcnow
from kumulus.backend.models import Account, SshKey
from kumulus.core.errors import ConflictError, NotFoundError
from kumulus.core.sshkeys import parse_ssh_public_key


def add_key(db: Session, account: Account, name: str, public_key: str, quota: int) -> SshKey:
    """Save a key (committed); ConflictError when the account has it already or has
    `quota` keys (`quota_exceeded`)."""
    parsed = parse_ssh_public_key(public_key)
    quotas.check_ssh_keys(db, account.id, quota)
    key = SshKey(
        account_id=account.id,
        name=name,
        public_key=parsed.line,
        fingerprint=parsed.fingerprint,
        created_at=utcnow(),
    )
    db.add(key)
    try:
        db.commit()
    except IntegrityError as exc:
        db.rollback()
        raise ConflictError(
            f"this key ({parsed.fingerprint}) is saved already", code="key_exists"
        ) from exc
    return key


def owned_key(db: Session, account: Account, key_id: int) -> SshKey:
    key = db.get(SshKey, key_id)
    if key is None or key.account_id != account.id:
        raise NotFoundError(f"no SSH key {key_id}")
    return key


def delete_key(db: Session, account: Account, key_id: int) -> None:
    db.delete(owned_key(db, account, key_id))
    db.commit()


def keys_page(
    db: Session, account: Account, limit: int, after: str | None
) -> tuple[list[SshKey], str | None]:
    stmt = select(SshKey).where(SshKey.account_id == account.id)
    return paging.page(db, stmt, [SshKey.id], limit, after)


def all_keys(db: Session, account: Account) -> list[SshKey]:
    return list(
        db.scalars(select(SshKey).where(SshKey.account_id == account.id).order_by(SshKey.id))
    )
