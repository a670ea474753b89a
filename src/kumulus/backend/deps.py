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
from kumulus.core.access import Access, marked
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
    if aware(api_token.expires_at) <= now:
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


def _ids_for(db: Database, token: str) -> tuple[int, int] | None:
    with db.session() as s:
        found = account_for_token(s, token)
        return (found[0].id, found[1].id) if found else None


async def _token_first(request: Request) -> None:
    """Authenticate the bearer token before the body is parsed (core/auth_first.py): the
    lookup runs on a thread, and the account and token ids wait on `request.state`."""
    token = _bearer(request)
    ids = await run_in_threadpool(_ids_for, request.app.state.db, token)
    if ids is None:
        raise UnauthorizedError("invalid, expired or revoked token")
    request.state.token_ids = ids


@gated(_token_first)
@marked(access=Access.ACCOUNT, statuses=(401, 429))
def current_token(request: Request, db: Db) -> tuple[Account, ApiToken]:
    """The account and the live API token (or console session) that authenticate the
    request; 401 otherwise. On routes of `AuthFirstRoute` routers the token was checked
    before the body was parsed, and only the rows are read here. Each call counts against
    the token's rate limit (429 past it; backend/rate_limits.py)."""
    ids: tuple[int, int] | None = getattr(request.state, "token_ids", None)
    found: tuple[Account, ApiToken] | None = None
    if ids is None:
        found = account_for_token(db, _bearer(request))
    else:
        account, api_token = db.get(Account, ids[0]), db.get(ApiToken, ids[1])
        if account is not None and api_token is not None:  # deleted since the gate
            found = account, api_token
    if found is None:
        raise UnauthorizedError("invalid, expired or revoked token")
    request.app.state.rate_limits.api_call(found[1].id)
    return found


CurrentToken = Annotated[tuple[Account, ApiToken], Depends(current_token)]


def current_account(found: CurrentToken) -> Account:
    """The caller's account (see current_token)."""
    return found[0]


CurrentAccount = Annotated[Account, Depends(current_account)]


@marked(access=Access.PROVIDER, statuses=(403,))
def current_provider(account: CurrentAccount) -> Account:
    if account.role != "provider":
        raise ForbiddenError("this is for provider accounts")
    return account


@marked(access=Access.DEVELOPER, statuses=(403,))
def current_developer(account: CurrentAccount) -> Account:
    if account.role != "developer":
        raise ForbiddenError("this is for developer accounts")
    return account


CurrentProvider = Annotated[Account, Depends(current_provider)]
CurrentDeveloper = Annotated[Account, Depends(current_developer)]
