"""What every console page shares: templates, the session cookie, CSRF, form errors.

Sessions: logging in issues an API token named "console session" with an expiry and puts
it in an HttpOnly, SameSite=Lax cookie (Secure over HTTPS), so the console authenticates
exactly as the CLI does and a session shows up (and can be revoked) among the account's
tokens. CSRF: a random token in its own SameSite=Strict cookie must come back in every
POST, as a hidden form field or the X-CSRF-Token header (htmx), compared in constant time."""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from importlib import resources
from typing import Annotated, Any

from fastapi import Depends, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from kumulus.backend import accounts
from kumulus.backend.clock import utcnow
from kumulus.backend.deps import Db, account_for_token
from kumulus.backend.models import Account, ApiToken
from kumulus.config import BackendSettings
from kumulus.core.errors import ForbiddenError
from kumulus.core.sizes import disk_usage_text, format_size, parse_size

SESSION_COOKIE = "kumulus_session"
CSRF_COOKIE = "kumulus_csrf"
SESSION_TTL = timedelta(days=7)
SESSION_TOKEN_NAME = "console session"  # noqa: S105 (a label, not a secret)

templates = Jinja2Templates(directory=str(resources.files("kumulus.console") / "templates"))
templates.env.filters["size"] = lambda value: format_size(int(value or 0))
# "X GiB used of Y GiB" from a VM's diskUsedBytes and its disk ("10g"): btrfs quotas never
# show in `df` inside the VM, so the VM page says it.
templates.env.globals["disk_usage"] = lambda used, disk: disk_usage_text(used, parse_size(disk))


def _secure(request: Request) -> bool:
    settings: BackendSettings = request.app.state.settings
    return request.url.scheme == "https" or (settings.public_url or "").startswith("https://")


def csrf_of(request: Request) -> str:
    """This browser's CSRF token (made on its first page view)."""
    token = getattr(request.state, "csrf", None) or request.cookies.get(CSRF_COOKIE)
    if not token or len(token) > 64:
        token = secrets.token_urlsafe(32)
        request.state.new_csrf = token
    request.state.csrf = token
    return str(token)


def _finish(request: Request, response: Response) -> Response:
    new = getattr(request.state, "new_csrf", None)
    if new:
        response.set_cookie(
            CSRF_COOKIE,
            new,
            httponly=True,
            samesite="strict",
            secure=_secure(request),
            path="/console",
        )
    response.headers["Cache-Control"] = "no-store"  # pages may hold a once-shown secret
    return response


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    ctx = {
        "request": request,
        "csrf": csrf_of(request),
        "account": getattr(request.state, "account", None),
        "errors": {},
        "values": {},
        **(context or {}),
    }
    response = templates.TemplateResponse(request, template, ctx, status_code=status_code)
    return _finish(request, response)


def redirect(request: Request, url: str) -> Response:
    """A redirect that works for plain form posts and for htmx requests alike."""
    if request.headers.get("hx-request"):
        response: Response = HTMLResponse("", headers={"HX-Redirect": url})
    else:
        response = RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)
    return _finish(request, response)


async def check_csrf(request: Request) -> dict[str, Any]:
    """Dependency of every console POST: the form, once its CSRF token matched the cookie."""
    form = await request.form()
    sent = request.headers.get("x-csrf-token") or form.get("csrf")
    expected = request.cookies.get(CSRF_COOKIE)
    if not (
        isinstance(sent, str) and expected and hmac.compare_digest(sent.encode(), expected.encode())
    ):
        raise ForbiddenError(
            "This form has expired or came from another site. Reload the page and try again.",
            code="csrf",
        )
    return {k: v for k, v in form.multi_items()}


Form = Annotated[dict[str, Any], Depends(check_csrf)]


class LoginRequiredError(Exception):
    """Raised by page dependencies; answered with a redirect to the login page."""


def _session_account(request: Request, db: Db) -> Account | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 200:
        return None
    found = account_for_token(db, token)
    if found is None:
        return None
    account, api_token = found
    request.app.state.rate_limits.api_call(api_token.id)  # a session is a token: same limit
    request.state.account = account
    request.state.session_token_id = api_token.id
    return account


def _require(role: str | None):  # type: ignore[no-untyped-def]
    def dependency(request: Request, db: Db) -> Account:
        account = _session_account(request, db)
        if account is None:
            raise LoginRequiredError
        if role is not None and account.role != role:
            raise ForbiddenError(
                f"This page is for {role} accounts; you are logged in as a {account.role}."
            )
        return account

    return dependency


MaybeAccount = Annotated[Account | None, Depends(_session_account)]
AnyAccount = Annotated[Account, Depends(_require(None))]
Developer = Annotated[Account, Depends(_require("developer"))]
Provider = Annotated[Account, Depends(_require("provider"))]


def start_session(
    request: Request, db: Db, settings: BackendSettings, account: Account, response: Response
) -> None:
    ttl = min(SESSION_TTL, accounts.token_ttl(settings))
    _, token = accounts.issue_token(
        db, account, SESSION_TOKEN_NAME, ttl, quota=settings.max_sessions, from_login=True
    )
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(ttl.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )


def end_session(request: Request, db: Db, response: Response) -> None:
    token_id = getattr(request.state, "session_token_id", None)
    if token_id is not None:
        row = db.get(ApiToken, token_id)
        if row is not None and row.revoked_at is None:
            row.revoked_at = utcnow()
            db.commit()
    response.delete_cookie(SESSION_COOKIE, path="/", secure=_secure(request), httponly=True)


def field_errors(exc: ValidationError, rename: dict[str, str] | None = None) -> dict[str, str]:
    """Pydantic errors as {form field: message a person can act on}. Nested fields are
    joined with "_" ("prices_cpu"), then renamed through `rename`."""
    errors: dict[str, str] = {}
    for err in exc.errors():
        name = "_".join(str(p) for p in err["loc"]) if err["loc"] else "form"
        name = (rename or {}).get(name, name)
        message = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "string_pattern_mismatch":
            message = "not in the expected format (see the hint)"
        elif err["type"] == "missing":
            message = "required"
        errors.setdefault(name, message)
    return errors
