"""Accounts and their bearer tokens: sign-up, log-in, API tokens and console sessions,
revoking them all, changing the password.

Every token expires (`settings.api_token_ttl`, 90 days by default; console sessions
sooner). "Revoke all" and a password change revoke every token of the account except the
one that asked (the caller stays logged in; anything else holding a token, a stolen one
included, is out).

Every function works in the caller's session and raises the error family
(kumulus.core.errors); the API routes and the console views both call these."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from kumulus.backend import billing, paging, quotas
from kumulus.backend.clock import utcnow
from kumulus.backend.models import Account, ApiToken
from kumulus.backend.rate_limits import RateLimits
from kumulus.backend.schemas import SignupRequest
from kumulus.backend.security import hash_password, needs_rehash, new_token, verify_password
from kumulus.config import BackendSettings
from kumulus.core.errors import ConflictError, ForbiddenError, NotFoundError, UnauthorizedError
from kumulus.core.money import parse_amount


def signup(db: Session, settings: BackendSettings, body: SignupRequest) -> Account:
    """A new account (developers get the sign-up credit); ConflictError if the email is
    taken."""
    account = Account(
        email=body.email,
        password_hash=hash_password(body.password),
        role=body.role,
        created_at=utcnow(),
    )
    db.add(account)
    try:
        db.commit()
    except IntegrityError as exc:
        db.rollback()
        raise ConflictError("an account with this email exists", code="email_taken") from exc
    credit = parse_amount(settings.signup_credit, settings.token_decimals)
    if account.role == "developer" and credit:
        billing.grant_promo(db, account.id, credit, "sign-up credit")
        db.commit()
    return account


def authenticate(db: Session, email: str, password: str) -> Account:
    """The account with this email and password; UnauthorizedError otherwise (same answer,
    same time, for an unknown email and a wrong password)."""
    account = db.scalar(select(Account).where(Account.email == email.strip().lower()))
    # The hash takes a moment and may wait for a hashing slot: no connection is held
    # meanwhile (the account stays loaded: sessions keep objects on commit).
    db.commit()
    if not verify_password(account.password_hash if account else None, password):
        raise UnauthorizedError("wrong email or password", code="bad_credentials")
    assert account is not None
    verified = account.password_hash
    if needs_rehash(verified):
        # Only over the hash just verified: a password changed meanwhile (the hash took a
        # moment, without a lock) must not be set back to the one this log-in knew.
        upgraded = hash_password(password)
        done = db.execute(
            update(Account)
            .where(Account.id == account.id, Account.password_hash == verified)
            .values(password_hash=upgraded)
            .execution_options(synchronize_session=False)
        )
        db.commit()
        if done.rowcount != 1:  # type: ignore[attr-defined]
            raise UnauthorizedError("wrong email or password", code="bad_credentials")
        set_committed_value(account, "password_hash", upgraded)
    return account


def token_ttl(settings: BackendSettings) -> timedelta:
    """How long a new API token lives."""
    return timedelta(seconds=settings.api_token_ttl)


def issue_token(
    db: Session,
    account: Account,
    name: str,
    ttl: timedelta,
    *,
    quota: int | None = None,
    from_login: bool = False,
) -> tuple[ApiToken, str]:
    """A new bearer token for `account` (committed) that expires after `ttl`: the row and
    the token, which is shown once and stored only as a hash. `quota`: at most that many
    live tokens of its kind; a token made on purpose past it is refused (ConflictError
    `quota_exceeded`), a log-in's (`from_login`) revokes the least recently used log-in
    tokens instead."""
    if quota is not None:
        if from_login:
            quotas.make_room_for_session(db, account.id, quota)
        else:
            quotas.check_api_tokens(db, account.id, quota)
    token, digest = new_token("kmt")
    now = utcnow()
    row = ApiToken(
        account_id=account.id,
        name=name,
        token_hash=digest,
        prefix=token[:10],
        created_at=now,
        expires_at=now + ttl,
        from_login=from_login,
    )
    db.add(row)
    db.commit()
    return row, token


def check_password(account: Account, password: str, limits: RateLimits) -> None:
    """ForbiddenError `wrong_password` unless `password` is the account's: what a stolen
    session cannot supply, asked before changes that lock the owner out or move money.
    Wrong passwords spend the account's log-in failure budget (RateLimitedError once it
    is spent, before any hashing): a session is no faster a way to guess than a log-in."""
    limits.password_attempt(account.email)
    if not verify_password(account.password_hash, password):
        limits.login_failed(account.email)
        raise ForbiddenError("wrong password", code="wrong_password")


def revoke_all(db: Session, account: Account, keep: int | None) -> int:
    """Revoke every live token and console session of `account` except the token with id
    `keep` (the caller's own; None: all of them); returns how many (committed)."""
    stmt = update(ApiToken).where(ApiToken.account_id == account.id, ApiToken.revoked_at.is_(None))
    if keep is not None:
        stmt = stmt.where(ApiToken.id != keep)
    stmt = stmt.values(revoked_at=utcnow()).execution_options(synchronize_session=False)
    result = db.execute(stmt)
    db.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


def change_password(
    db: Session, limits: RateLimits, account: Account, current: str, new: str, keep: int | None
) -> int:
    """Set a new password once `current` is checked (`check_password`), and revoke every
    other token and session (`keep` is the caller's); returns how many were revoked
    (committed)."""
    check_password(account, current, limits)
    account.password_hash = hash_password(new)
    db.flush()
    return revoke_all(db, account, keep)


def tokens_page(
    db: Session, account: Account, limit: int, after: str | None
) -> tuple[list[ApiToken], str | None]:
    stmt = select(ApiToken).where(ApiToken.account_id == account.id)
    return paging.page(db, stmt, [ApiToken.id], limit, after)


def all_tokens(db: Session, account: Account) -> list[ApiToken]:
    return list(
        db.scalars(select(ApiToken).where(ApiToken.account_id == account.id).order_by(ApiToken.id))
    )


def revoke_token(db: Session, account: Account, token_id: int) -> None:
    """Revoke one of the account's tokens (idempotent); NotFoundError if not theirs."""
    row = db.get(ApiToken, token_id)
    if row is None or row.account_id != account.id:
        raise NotFoundError(f"no token {token_id}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        db.commit()
