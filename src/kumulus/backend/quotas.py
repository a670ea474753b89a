"""Per-account quotas: hosts, host tokens, VMs, SSH keys, API tokens and login sessions.

A quota is checked in the transaction that adds the thing, after `lock_account`, so two
requests of one account cannot both see room for one more (PostgreSQL: the account's row
lock; SQLite: the database's write lock, which the same UPDATE takes). Over a quota is
`ConflictError` code `quota_exceeded` (409: the account's state refuses it until it removes
something), with the limit in the message. Every count is of what still occupies room:
revoked hosts, used or expired host tokens, deleted VMs and revoked or expired tokens do
not count."""

from __future__ import annotations

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.orm import Session

from kumulus.backend.clock import utcnow
from kumulus.backend.models import VM, Account, ApiToken, Base, Host, HostToken, SshKey
from kumulus.core.errors import ConflictError

QUOTA_EXCEEDED = "quota_exceeded"


def lock_account(db: Session, account_id: int) -> None:
    """Serialise quota checks of one account until the transaction ends (a no-op UPDATE:
    a row lock on PostgreSQL, the write lock on SQLite)."""
    db.execute(update(Account).where(Account.id == account_id).values(id=Account.id))


def _count(db: Session, model: type[Base], *where: ColumnElement[bool]) -> int:
    return int(db.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _refuse(db: Session, have: int, what: str, limit: int, remedy: str) -> ConflictError:
    db.rollback()  # the lock goes with it
    return ConflictError(
        f"quota reached: this account may have at most {limit} {what} and has {have}; {remedy}",
        code=QUOTA_EXCEEDED,
    )


def check_ssh_keys(db: Session, account_id: int, limit: int) -> None:
    lock_account(db, account_id)
    have = _count(db, SshKey, SshKey.account_id == account_id)
    if have >= limit:
        raise _refuse(db, have, "SSH keys", limit, "delete one first")


def check_vms(db: Session, account_id: int, limit: int) -> None:
    lock_account(db, account_id)
    have = _count(db, VM, VM.account_id == account_id, VM.intended_state != "deleted")
    if have >= limit:
        raise _refuse(db, have, "VMs", limit, "delete one first")


def _live_tokens(account_id: int, from_login: bool) -> tuple[ColumnElement[bool], ...]:
    return (
        ApiToken.account_id == account_id,
        ApiToken.revoked_at.is_(None),
        or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > utcnow()),
        ApiToken.from_login.is_(from_login),
    )


def check_api_tokens(db: Session, account_id: int, limit: int) -> None:
    lock_account(db, account_id)
    have = _count(db, ApiToken, *_live_tokens(account_id, from_login=False))
    if have >= limit:
        raise _refuse(db, have, "API tokens", limit, "revoke one first")


def make_room_for_session(db: Session, account_id: int, limit: int) -> list[int]:
    """Before a log-in issues its token: revoke the least recently used tokens that
    log-ins issued, so that at most `limit` remain with the new one (a log-in never fails
    for the quota: that would lock out an owner who lost their tokens). Returns the ids
    revoked."""
    lock_account(db, account_id)
    live = db.scalars(
        select(ApiToken.id)
        .where(*_live_tokens(account_id, from_login=True))
        .order_by(
            func.coalesce(ApiToken.last_used_at, ApiToken.created_at).desc(), ApiToken.id.desc()
        )
        .offset(max(0, limit - 1))
    ).all()
    if live:
        db.execute(update(ApiToken).where(ApiToken.id.in_(live)).values(revoked_at=utcnow()))
    return list(live)


def _live_host_tokens(db: Session, account_id: int) -> int:
    return _count(
        db,
        HostToken,
        HostToken.account_id == account_id,
        HostToken.used_at.is_(None),
        HostToken.expires_at > utcnow(),
    )


def _hosts(db: Session, account_id: int) -> int:
    return _count(db, Host, Host.account_id == account_id, Host.host_key_state != "revoked")


def check_host_tokens(db: Session, account_id: int, max_tokens: int, max_hosts: int) -> None:
    """Room for one more host token: under the token quota, and under the host quota
    counting every unused token as a host to come."""
    lock_account(db, account_id)
    tokens = _live_host_tokens(db, account_id)
    if tokens >= max_tokens:
        raise _refuse(
            db, tokens, "unused host tokens", max_tokens,
            "use one or wait for one to expire first",
        )  # fmt: skip
    hosts = _hosts(db, account_id)
    if hosts + tokens >= max_hosts:
        raise _refuse(
            db, hosts, f"hosts (plus {tokens} unused host tokens)" if tokens else "hosts",
            max_hosts, "revoke a host first",
        )  # fmt: skip


def check_hosts(db: Session, account_id: int, limit: int) -> None:
    """At registration (the token was made under the quota; hosts may have come since)."""
    lock_account(db, account_id)
    have = _hosts(db, account_id)
    if have >= limit:
        raise _refuse(db, have, "hosts", limit, "revoke a host first")
