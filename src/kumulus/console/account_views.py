"""Sign up, log in, log out, and the account page (API tokens with their expiry, "log out
everywhere else", password change). Each form goes through the same schemas and functions
as the API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select

from kumulus.backend import accounts, logins, providers
from kumulus.backend.deps import Db, Settings
from kumulus.backend.models import Account, ApiToken
from kumulus.backend.rate_limits import RateLimits, get_rate_limits
from kumulus.backend.schemas import PasswordChange, ProviderProfileIn, SignupRequest, TokenCreate
from kumulus.console.web import (
    SESSION_TTL,
    AnyAccount,
    Form,
    MaybeAccount,
    end_session,
    field_errors,
    redirect,
    render,
    start_session,
)
from kumulus.core.errors import (
    KumulusError,
    RateLimitedError,
    UnauthorizedError,
    UnavailableError,
)
from kumulus.core.http import error_headers, status_of

router = APIRouter(prefix="/console", include_in_schema=False)
_WRONG = "wrong email or password"  # the same for an unknown email: no account probing
Limits = Annotated[RateLimits, Depends(get_rate_limits)]


def home_of(account: Account) -> str:
    return "/console/provider/hosts" if account.role == "provider" else "/console/vms"


@router.get("")
@router.get("/")
def index(request: Request, account: MaybeAccount) -> Response:
    return RedirectResponse(home_of(account) if account else "/console/login", status_code=303)


@router.get("/login")
def login_page(request: Request, account: MaybeAccount) -> Response:
    if account is not None:
        return redirect(request, home_of(account))
    return render(request, "login.html", {"title": "Log in", "nav": "login"})


@router.post("/login")
def login(request: Request, form: Form, db: Db, settings: Settings, limits: Limits) -> Response:
    email = str(form.get("email", "")).strip().lower()[:254]
    password = str(form.get("password", ""))[:256]
    errors = {}
    required = "required"
    if not email:
        errors["email"] = required
    if not password:
        errors["password"] = required
    if errors:
        return _login_page(request, email, errors, 422)
    try:
        account = logins.log_in(db, limits, limits.client_ip(request), email, password)
    except UnauthorizedError:
        return _login_page(request, email, {"password": _WRONG}, 401)
    except KumulusError as exc:  # too many attempts, or too many log-ins at once
        return _login_page(request, email, {"form": exc.detail}, status_of(exc), exc)
    response = redirect(request, home_of(account))
    start_session(request, db, settings, account, response)
    return response


def _login_page(
    request: Request,
    email: str,
    errors: dict[str, str],
    status_code: int,
    exc: KumulusError | None = None,
) -> Response:
    response = render(
        request,
        "login.html",
        {"title": "Log in", "nav": "login", "errors": errors, "values": {"email": email}},
        status_code=status_code,
    )
    return _with_retry_after(response, exc)


def _with_retry_after(response: Response, exc: KumulusError | None) -> Response:
    if exc is not None and "Retry-After" in (headers := error_headers(exc)):
        response.headers["Retry-After"] = headers["Retry-After"]
    return response


@router.get("/signup")
def signup_page(request: Request, account: MaybeAccount) -> Response:
    if account is not None:
        return redirect(request, home_of(account))
    return render(request, "signup.html", {"title": "Sign up", "nav": "signup"})


@router.post("/signup")
def signup(request: Request, form: Form, db: Db, settings: Settings, limits: Limits) -> Response:
    values = {k: str(form.get(k, "")) for k in ("role", "email", "name", "contact")}
    values["country"] = str(form.get("country", "")).strip().upper()
    values["region"] = str(form.get("region", "")).strip().lower()
    errors: dict[str, str] = {}
    try:
        body = SignupRequest.model_validate(
            {"email": values["email"], "password": form.get("password", ""), "role": values["role"]}
        )
    except ValidationError as exc:
        errors.update(field_errors(exc))
    profile: ProviderProfileIn | None = None
    if values["role"] == "provider":
        try:
            profile = ProviderProfileIn.model_validate(
                {k: values[k] for k in ("name", "contact", "country", "region")}
            )
        except ValidationError as exc:
            errors.update(field_errors(exc))
    if errors:
        return render(
            request,
            "signup.html",
            {"title": "Sign up", "nav": "signup", "errors": errors, "values": values},
            status_code=422,
        )
    try:
        account = logins.sign_up(db, settings, limits, limits.client_ip(request), body)
    except KumulusError as exc:
        # The email is taken: said next to it; too many sign-ups: said above the form.
        where = "form" if isinstance(exc, RateLimitedError | UnavailableError) else "email"
        response = render(
            request,
            "signup.html",
            {"title": "Sign up", "errors": {where: exc.detail}, "values": values},
            status_code=status_of(exc),
        )
        return _with_retry_after(response, exc)
    if profile is not None:
        providers.update_profile(db, settings, account, profile)
    response = redirect(
        request, "/console/provider/wallet" if account.role == "provider" else "/console/keys"
    )
    start_session(request, db, settings, account, response)
    return response


@router.post("/logout")
def logout(request: Request, form: Form, db: Db, account: MaybeAccount) -> Response:
    response = redirect(request, "/console/login")
    end_session(request, db, response)
    return response


def _account_page(
    request: Request, db: Db, account: Account, status_code: int = 200, **extra: object
) -> Response:
    tokens = list(
        db.scalars(select(ApiToken).where(ApiToken.account_id == account.id).order_by(ApiToken.id))
    )
    settings = request.app.state.settings
    return render(
        request,
        "account.html",
        {
            "title": "Account",
            "nav": "account",
            "tokens": tokens,
            "token_days": round(settings.api_token_ttl / 86400),
            "session_days": min(SESSION_TTL.days, round(settings.api_token_ttl / 86400)),
            "session_token_id": getattr(request.state, "session_token_id", None),
            **extra,
        },
        status_code=status_code,
    )


@router.get("/account")
def account_page(request: Request, db: Db, account: AnyAccount) -> Response:
    return _account_page(request, db, account)


@router.post("/account/tokens")
def create_token(
    request: Request, form: Form, db: Db, settings: Settings, account: AnyAccount
) -> Response:
    values = {"name": form.get("name")}
    try:
        body = TokenCreate.model_validate({"name": str(form.get("name", "")).strip()})
        row, created = accounts.issue_token(
            db, account, body.name, accounts.token_ttl(settings), quota=settings.max_api_tokens
        )
    except ValidationError as exc:
        return _account_page(request, db, account, 422, errors=field_errors(exc), values=values)
    except KumulusError as exc:
        return _account_page(
            request, db, account, status_of(exc), errors={"name": exc.detail}, values=values
        )
    # Rendered in this response only: never stored, never shown again.
    return _account_page(
        request,
        db,
        account,
        new_token=created,
        new_token_name=body.name,
        new_token_expires=row.expires_at,
    )


@router.post("/account/tokens/{token_id}/revoke")
def revoke_token(
    request: Request, token_id: int, form: Form, db: Db, account: AnyAccount
) -> Response:
    try:
        accounts.revoke_token(db, account, token_id)
    except KumulusError as exc:
        return _account_page(request, db, account, status_of(exc), error=exc.detail)
    if token_id == getattr(request.state, "session_token_id", None):
        response = redirect(request, "/console/login")
        end_session(request, db, response)
        return response
    return redirect(request, "/console/account")


@router.post("/account/revoke-all")
def revoke_all(request: Request, form: Form, db: Db, account: AnyAccount) -> Response:
    """Every token and session but this browser's is revoked; this one stays logged in."""
    count = accounts.revoke_all(db, account, keep=getattr(request.state, "session_token_id", None))
    return _account_page(
        request, db, account, flash=f"Logged out everywhere else: {count} revoked."
    )


@router.post("/account/password")
def change_password(
    request: Request, form: Form, db: Db, account: AnyAccount, limits: Limits
) -> Response:
    values = {
        "current_password": str(form.get("current_password", ""))[:256],
        "new_password": str(form.get("new_password", ""))[:256],
    }
    try:
        body = PasswordChange.model_validate(values)
        count = accounts.change_password(
            db,
            limits,
            account,
            body.current_password,
            body.new_password,
            keep=getattr(request.state, "session_token_id", None),
        )
    except ValidationError as exc:
        return _account_page(request, db, account, 422, errors=field_errors(exc))
    except KumulusError as exc:
        db.rollback()
        return _account_page(
            request, db, account, status_of(exc), errors={"current_password": exc.detail}
        )
    return _account_page(
        request,
        db,
        account,
        flash=f"Password changed; {count} other token(s) and session(s) revoked.",
    )
