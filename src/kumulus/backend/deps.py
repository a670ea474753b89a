"""FastAPI dependencies: database session and who is calling (auth lives here only)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated

import anyio
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


async def get_db(request: Request) -> AsyncIterator[Session]:
    """The request's session. Opening one takes no connection (the first query does), so
    it is made on the event loop; closing returns the connection to the pool, on a thread
    outside the request threads' limit: a close must never wait behind the requests that
    wait for its connection."""
    session: Session = request.app.state.db.sessions()
    try:
        yield session
    finally:
        with anyio.CancelScope(shield=True):  # a client that hangs up still frees it
            await anyio.to_thread.run_sync(session.close, limiter=anyio.CapacityLimiter(1))


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


def _rows_for(db: Database, token: str) -> tuple[Account, ApiToken] | None:
    # The rows leave their session loaded (sessions keep objects on commit): the request's
    # own session adopts them without reading them again.
    with db.session() as s:
        return account_for_token(s, token)


async def _token_first(request: Request) -> None:
    """Authenticate the bearer token before the body is parsed (core/auth_first.py): the
    lookup runs on a thread with a session of its own, closed at once, and the account and
    token rows wait on `request.state`."""
    token = _bearer(request)
    rows = await run_in_threadpool(_rows_for, request.app.state.db, token)
    if rows is None:
        raise UnauthorizedError("invalid, expired or revoked token")
    request.state.token_rows = rows


@gated(_token_first)
@marked(access=Access.ACCOUNT, statuses=(401, 429))
async def current_token(request: Request, db: Db) -> tuple[Account, ApiToken]:
    """The account and the live API token (or console session) that authenticate the
    request; 401 otherwise. On routes of `AuthFirstRoute` routers the gate checked the
    token before the body was parsed, and its rows join the request's session without a
    query: no database connection is taken here, nor held while the request waits for a
    thread (a request holding one while others wait for threads is how a pool starves).
    Each call counts against the token's rate limit (429 past it; backend/rate_limits.py)."""
    rows: tuple[Account, ApiToken] | None = getattr(request.state, "token_rows", None)
    if rows is None:
        found = await run_in_threadpool(_rows_for, request.app.state.db, _bearer(request))
        if found is None:
            raise UnauthorizedError("invalid, expired or revoked token")
        rows = found
    account, api_token = db.merge(rows[0], load=False), db.merge(rows[1], load=False)
    request.app.state.rate_limits.api_call(api_token.id)
    return account, api_token


CurrentToken = Annotated[tuple[Account, ApiToken], Depends(current_token)]


async def current_account(found: CurrentToken) -> Account:
    """The caller's account (see current_token)."""
    return found[0]


CurrentAccount = Annotated[Account, Depends(current_account)]


@marked(access=Access.PROVIDER, statuses=(403,))
async def current_provider(account: CurrentAccount) -> Account:
    if account.role != "provider":
        raise ForbiddenError("this is for provider accounts")
    return account


@marked(access=Access.DEVELOPER, statuses=(403,))
async def current_developer(account: CurrentAccount) -> Account:
    if account.role != "developer":
        raise ForbiddenError("this is for developer accounts")
    return account


CurrentProvider = Annotated[Account, Depends(current_provider)]
CurrentDeveloper = Annotated[Account, Depends(current_developer)]
