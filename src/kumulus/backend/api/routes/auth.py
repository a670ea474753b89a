"""Sign-up, log-in, password change and API tokens (for the CLI, scripts and console
sessions): each expires, and all but the caller's can be revoked at once."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from kumulus.backend import accounts, logins
from kumulus.backend.deps import CurrentAccount, CurrentToken, Db, DbId, Settings
from kumulus.backend.models import Account
from kumulus.backend.paging import After, Limit
from kumulus.backend.rate_limits import RateLimits, get_rate_limits
from kumulus.backend.schemas import (
    AccountPublic,
    LoginRequest,
    LoginResponse,
    PasswordChange,
    Revoked,
    SignupRequest,
    TokenCreate,
    TokenCreated,
    TokenPublic,
)
from kumulus.core.access import Public
from kumulus.core.auth_first import AuthFirstRoute
from kumulus.core.openapi_statuses import refusals
from kumulus.core.schemas import Page

router = APIRouter(prefix="/v1", tags=["accounts"], route_class=AuthFirstRoute)
Limits = Annotated[RateLimits, Depends(get_rate_limits)]


@router.post(
    "/auth/signup",
    response_model=AccountPublic,
    status_code=status.HTTP_201_CREATED,
    dependencies=[Public],
    responses=refusals(409),
)
def signup(
    body: SignupRequest, request: Request, db: Db, settings: Settings, limits: Limits
) -> Account:
    return logins.sign_up(db, settings, limits, limits.client_ip(request), body)


@router.post(
    "/auth/login", response_model=LoginResponse, dependencies=[Public], responses=refusals(401)
)
def login(
    body: LoginRequest, request: Request, db: Db, settings: Settings, limits: Limits
) -> LoginResponse:
    """A new API token for the account; it expires at `expiresAt`."""
    account = logins.log_in(db, limits, limits.client_ip(request), body.email, body.password)
    row, token = accounts.issue_token(
        db,
        account,
        body.token_name,
        accounts.token_ttl(settings),
        quota=settings.max_sessions,
        from_login=True,
    )
    return LoginResponse(
        account=AccountPublic.model_validate(account, from_attributes=True),
        token=token,
        expires_at=row.expires_at,
    )


@router.post("/auth/password", response_model=Revoked, responses=refusals(403))
def change_password(
    body: PasswordChange,
    found: CurrentToken,
    db: Db,
    limits: Limits,
) -> Revoked:
    """Set a new password (403 `wrong_password` unless `currentPassword` is right); every
    other token and console session of the account is revoked, the caller's is kept."""
    account, token = found
    return Revoked(
        revoked=accounts.change_password(
            db, limits, account, body.current_password, body.new_password, keep=token.id
        )
    )


@router.get("/me", response_model=AccountPublic)
def me(account: CurrentAccount) -> Account:
    return account


@router.get("/tokens", response_model=Page[TokenPublic])
def list_tokens(
    account: CurrentAccount, db: Db, limit: Limit = 50, after: After = None
) -> Page[TokenPublic]:
    rows, next_cursor = accounts.tokens_page(db, account, limit, after)
    return Page(
        items=[TokenPublic.model_validate(r, from_attributes=True) for r in rows],
        next=next_cursor,
    )


@router.post("/tokens", response_model=TokenCreated, status_code=status.HTTP_201_CREATED)
def create_token(
    body: TokenCreate, account: CurrentAccount, db: Db, settings: Settings
) -> TokenCreated:
    row, token = accounts.issue_token(
        db, account, body.name, accounts.token_ttl(settings), quota=settings.max_api_tokens
    )
    return TokenCreated(
        token=token, **TokenPublic.model_validate(row, from_attributes=True).model_dump()
    )


# `:int`: /tokens/revoke-all is another route, not a token id (DELETE on it is a 405).
@router.delete("/tokens/{token_id:int}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(token_id: DbId, account: CurrentAccount, db: Db) -> Response:
    accounts.revoke_token(db, account, token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/tokens/revoke-all", response_model=Revoked)
def revoke_all_tokens(found: CurrentToken, db: Db) -> Revoked:
    """Log out everywhere: revoke every token and console session of the account except
    the one making this call (revoke that one with `DELETE /v1/tokens/{id}`)."""
    account, token = found
    return Revoked(revoked=accounts.revoke_all(db, account, keep=token.id))
