"""Sign-up, log-in and API tokens (for the CLI, scripts and, later, console sessions)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from kumulus.backend import billing
from kumulus.backend.clock import utcnow
from kumulus.backend.deps import CurrentAccount, Db, Settings
from kumulus.backend.models import Account, ApiToken
from kumulus.backend.schemas import (
    AccountPublic,
    LoginRequest,
    LoginResponse,
    SignupRequest,
    TokenCreate,
    TokenCreated,
    TokenPublic,
)
from kumulus.backend.security import hash_password, new_token, verify_password
from kumulus.core.money import parse_amount

router = APIRouter(prefix="/v1", tags=["accounts"])


def _issue_token(db: Db, account: Account, name: str) -> tuple[ApiToken, str]:
    token, digest = new_token("kmt")
    row = ApiToken(
        account_id=account.id, name=name, token_hash=digest, prefix=token[:10], created_at=utcnow()
    )
    db.add(row)
    db.commit()
    return row, token


@router.post("/auth/signup", response_model=AccountPublic, status_code=status.HTTP_201_CREATED)
def signup(body: SignupRequest, db: Db, settings: Settings) -> Account:
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
        raise HTTPException(status.HTTP_409_CONFLICT, "an account with this email exists") from exc
    credit = parse_amount(settings.signup_credit, settings.token_decimals)
    if account.role == "developer" and credit:
        billing.grant(db, billing.DEVELOPER, account.id, credit, "sign-up credit")
        db.commit()
    return account


@router.post("/auth/login", response_model=LoginResponse)
def login(body: LoginRequest, db: Db) -> LoginResponse:
    account = db.scalar(select(Account).where(Account.email == body.email.strip().lower()))
    if not verify_password(account.password_hash if account else None, body.password):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong email or password")
    assert account is not None
    _, token = _issue_token(db, account, body.token_name)
    return LoginResponse(
        account=AccountPublic.model_validate(account, from_attributes=True), token=token
    )


@router.get("/me", response_model=AccountPublic)
def me(account: CurrentAccount) -> Account:
    return account


@router.get("/tokens", response_model=list[TokenPublic])
def list_tokens(account: CurrentAccount, db: Db) -> list[ApiToken]:
    return list(
        db.scalars(select(ApiToken).where(ApiToken.account_id == account.id).order_by(ApiToken.id))
    )


@router.post("/tokens", response_model=TokenCreated, status_code=status.HTTP_201_CREATED)
def create_token(body: TokenCreate, account: CurrentAccount, db: Db) -> TokenCreated:
    row, token = _issue_token(db, account, body.name)
    return TokenCreated(
        token=token, **TokenPublic.model_validate(row, from_attributes=True).model_dump()
    )


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(token_id: int, account: CurrentAccount, db: Db) -> Response:
    row = db.get(ApiToken, token_id)
    if row is None or row.account_id != account.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no token {token_id}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
