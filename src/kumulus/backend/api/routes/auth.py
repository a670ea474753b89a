"""Sign-up, log-in and API tokens (for the CLI, scripts and console sessions)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from kumulus.backend import accounts
from kumulus.backend.deps import CurrentAccount, Db, DbId, Settings
from kumulus.backend.models import Account
from kumulus.backend.paging import After, Limit
from kumulus.backend.schemas import (
    AccountPublic,
    LoginRequest,
    LoginResponse,
    SignupRequest,
    TokenCreate,
    TokenCreated,
    TokenPublic,
)
from kumulus.core.auth_first import AuthFirstRoute
from kumulus.core.schemas import Page

router = APIRouter(prefix="/v1", tags=["accounts"], route_class=AuthFirstRoute)


@router.post("/auth/signup", response_model=AccountPublic, status_code=status.HTTP_201_CREATED)
def signup(body: SignupRequest, db: Db, settings: Settings) -> Account:
    return accounts.signup(db, settings, body)


@router.post("/auth/login", response_model=LoginResponse)
def login(body: LoginRequest, db: Db) -> LoginResponse:
    account = accounts.authenticate(db, body.email, body.password)
    _, token = accounts.issue_token(db, account, body.token_name)
    return LoginResponse(
        account=AccountPublic.model_validate(account, from_attributes=True), token=token
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
def create_token(body: TokenCreate, account: CurrentAccount, db: Db) -> TokenCreated:
    row, token = accounts.issue_token(db, account, body.name)
    return TokenCreated(
        token=token, **TokenPublic.model_validate(row, from_attributes=True).model_dump()
    )


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(token_id: DbId, account: CurrentAccount, db: Db) -> Response:
    accounts.revoke_token(db, account, token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
