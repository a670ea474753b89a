"""FastAPI dependencies: database session and who is calling (auth lives here only)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select
from sqlalchemy.orm import Session

from kumulus.backend.clock import aware, utcnow
from kumulus.backend.db import Database
from kumulus.backend.models import Account, ApiToken
from kumulus.backend.security import hash_token
from kumulus.config import BackendSettings
from kumulus.core.auth_first import gated
from kumulus.core.errors import ForbiddenError, UnauthorizedError
from kumulus.core.schemas import MAX_DB_ID

_LAST_USED_GRANULARITY = timedelta(minutes=1)


def get_db(request: Request) -> Iterator[Session]:
    with request.app.state.db.session() as session:
        yield session


async def get_settings(request: Request) -> BackendSettings:
    # async: read on the event loop, so routes served apart from the request threads
    # (heartbeats) never wait for one.
    settings: BackendSettings = request.app.state.settings
    return settings


Db = Annotated[Session, Depends(get_db)]
Settings = Annotated[BackendSettings, Depends(get_settings)]


# Path parameters: bounded so that no value reaches the database it cannot hold.
DbId = Annotated[int, Path(ge=1, le=MAX_DB_ID)]
ResourceId = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]


def account_for_token(db: Session, token: str) -> tuple[Account, ApiToken] | None:
    """The account a bearer token (API token or console session) belongs to, if the token
    is live (not revoked, not expired); records when it was last used."""
    row = db.execute(
        select(ApiToken, Account)
        .join(Account, Account.id == ApiToken.account_id)
        .where(ApiToken.token_hash == hash_token(token.strip()), ApiToken.revoked_at.is_(None))
    ).first()
    if row is None:
        return None
    api_token, account = row
    now = utcnow()
    if api_token.expires_at is not None and aware(api_token.expires_at) <= now:
        return None
    if (
        api_token.last_used_at is None
        or now - aware(api_token.last_used_at) > _LAST_USED_GRANULARITY
    ):
        api_token.last_used_at = now
        db.commit()
    return account, api_token


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthorizedError("authentication required: send 'Authorization: Bearer <api token>'")
    return token


def _account_id_for(db: Database, token: str) -> int | None:
    with db.session() as s:
        found = account_for_token(s, token)
        return found[0].id if found else None


async def _token_first(request: Request) -> None:
    """Authenticate the bearer token before the body is parsed (core/auth_first.py): the
    lookup runs on a thread, and its account id waits on `request.state`."""
    token = _bearer(request)
    account_id = await run_in_threadpool(_account_id_for, request.app.state.db, token)
    if account_id is None:
        raise UnauthorizedError("invalid, expired or revoked token")
    request.state.account_id = account_id


@gated(_token_first)
def current_account(request: Request, db: Db) -> Account:
    """The account whose live API token or console session authenticates the request; 401
    otherwise. On routes of `AuthFirstRoute` routers the token was checked before the body
    was parsed, and only the account is read here."""
    account_id = getattr(request.state, "account_id", None)
    if account_id is None:
        found = account_for_token(db, _bearer(request))
        if found is None:
            raise UnauthorizedError("invalid, expired or revoked token")
        return found[0]
    account = db.get(Account, account_id)
    if account is None:  # deleted since the gate
        raise UnauthorizedError("invalid, expired or revoked token")
    return account


CurrentAccount = Annotated[Account, Depends(current_account)]


def current_provider(account: CurrentAccount) -> Account:
    if account.role != "provider":
        raise ForbiddenError("this is for provider accounts")
    return account


def current_developer(account: CurrentAccount) -> Account:
    if account.role != "developer":
        raise ForbiddenError("this is for developer accounts")
    return account


CurrentProvider = Annotated[Account, Depends(current_provider)]
CurrentDeveloper = Annotated[Account, Depends(current_developer)]
