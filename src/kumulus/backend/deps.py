"""FastAPI dependencies: database session and who is calling (auth lives here only)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from kumulus.backend.clock import aware, utcnow
from kumulus.backend.models import Account, ApiToken
from kumulus.backend.security import hash_token
from kumulus.config import BackendSettings

_LAST_USED_GRANULARITY = timedelta(minutes=1)


def get_db(request: Request) -> Iterator[Session]:
    with request.app.state.db.session() as session:
        yield session


def get_settings(request: Request) -> BackendSettings:
    settings: BackendSettings = request.app.state.settings
    return settings


Db = Annotated[Session, Depends(get_db)]
Settings = Annotated[BackendSettings, Depends(get_settings)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, {"WWW-Authenticate": "Bearer"})


def current_account(request: Request, db: Db) -> Account:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("authentication required: send 'Authorization: Bearer <api token>'")
    row = db.execute(
        select(ApiToken, Account)
        .join(Account, Account.id == ApiToken.account_id)
        .where(ApiToken.token_hash == hash_token(token.strip()), ApiToken.revoked_at.is_(None))
    ).first()
    if row is None:
        raise _unauthorized("invalid or revoked token")
    api_token, account = row
    now = utcnow()
    if (
        api_token.last_used_at is None
        or now - aware(api_token.last_used_at) > _LAST_USED_GRANULARITY
    ):
        api_token.last_used_at = now
        db.commit()
    return account


CurrentAccount = Annotated[Account, Depends(current_account)]


def current_provider(account: CurrentAccount) -> Account:
    if account.role != "provider":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this is for provider accounts")
    return account


def current_developer(account: CurrentAccount) -> Account:
    if account.role != "developer":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this is for developer accounts")
    return account


CurrentProvider = Annotated[Account, Depends(current_provider)]
CurrentDeveloper = Annotated[Account, Depends(current_developer)]
