"""HTTP conventions shared by the agent and the backend.

Every 4xx/5xx answer is an `ErrorBody`: {"detail", "code", "retry", "fields"}. Services raise
`KumulusError`s; this module is the one place where they (and FastAPI's own validation and
routing errors) become HTTP answers, and where clients read such answers back."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from typing import Any

import httpx
from fastapi import FastAPI, Request, routing
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from kumulus.core import errors
from kumulus.core.schemas import ErrorBody
from kumulus.core.untrusted_text import printable_line

log = logging.getLogger(__name__)

MAX_RELAYED_DETAIL = 2000  # characters of another party's error detail that we keep
_CODE_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")

# The one mapping from the error family to HTTP (most specific class first).
_STATUS: tuple[tuple[type[errors.KumulusError], int], ...] = (
    (errors.InvalidError, 422),
    (errors.UnauthorizedError, 401),
    (errors.ForbiddenError, 403),
    (errors.NotFoundError, 404),
    (errors.ConflictError, 409),
    (errors.PaymentRequiredError, 402),
    (errors.TooLargeError, 413),
    (errors.RateLimitedError, 429),
    (errors.UnavailableError, 503),
    (errors.UpstreamError, 502),
    (errors.InternalError, 500),
)

# Codes of errors that FastAPI/Starlette raise themselves (routing, bodies).
_CODE_OF_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    503: "unavailable",
}

# Declared on every route of both apps (FastAPI then drops its own 422 schema); each
# operation's 4xx statuses are added by core/openapi_statuses.py.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "5XX": {"model": ErrorBody, "description": "We or a host failed; see `retry`."},
}


def status_of(exc: errors.KumulusError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_body(
    detail: str,
    code: str,
    retry: bool = False,
    fields: Sequence[errors.FieldProblem] | None = None,
) -> dict[str, Any]:
    return ErrorBody.model_validate(
        {
            "detail": detail,
            "code": code,
            "retry": retry,
            "fields": None
            if fields is None
            else [{"loc": list(f.loc), "msg": f.msg} for f in fields],
        }
    ).model_dump(mode="json")


def error_response(exc: errors.KumulusError) -> JSONResponse:
    status = status_of(exc)
    return JSONResponse(
        error_body(exc.detail, exc.error_code, exc.retry, exc.fields),
        status_code=status,
        headers=error_headers(exc),
    )


def error_headers(exc: errors.KumulusError) -> dict[str, str]:
    """The headers that go with an error's answer (the console's pages send them too)."""
    headers = {}
    if status_of(exc) == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return headers


def field_problems(exc_errors: Sequence[Any]) -> list[errors.FieldProblem]:
    """Pydantic's error list as FieldProblems with readable messages."""
    problems = []
    for err in exc_errors:
        loc = tuple(x if isinstance(x, int) else str(x) for x in err.get("loc", ()))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append(errors.FieldProblem(loc=loc, msg=msg))
    return problems


def validation_message(problems: Sequence[errors.FieldProblem]) -> str:
    """One readable sentence: 'memory: invalid size ...; cpu: ...'."""
    parts = []
    for p in problems:
        loc = ".".join(str(x) for x in p.loc if x not in ("body", "query", "path", "header"))
        parts.append(f"{loc}: {p.msg}" if loc else p.msg)
    return "; ".join(parts) or "invalid request"


def invalid_from_validation(exc_errors: Sequence[Any]) -> errors.InvalidError:
    problems = field_problems(exc_errors)
    return errors.InvalidError(validation_message(problems), fields=problems)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of `app` with an ErrorBody."""

    @app.exception_handler(errors.KumulusError)
    async def _kumulus(_: Request, exc: errors.KumulusError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(invalid_from_validation(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI's "error parsing the body" (not UTF-8, broken multipart): invalid
            # input like any other, the one status the documents declare for it.
            return error_response(errors.InvalidError(f"body: {exc.detail}"))
        if exc.status_code == 405:
            # Starlette names the methods of the first route matching the path only; each
            # method is its own route here, so `Allow` lists them all (RFC 9110 15.5.6).
            exc.headers = {"Allow": ", ".join(allowed_methods(request.app, request.scope))}
        return http_exception_response(exc)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse(
            error_body("internal error: it was logged; try again later", "internal", True),
            status_code=500,
        )


def allowed_methods(app: Any, scope: Any) -> list[str]:
    """The methods the routes of `app` serve at the scope's path; routes spelling the path
    literally win over templates it also fits (/v1/vms/quote is not /v1/vms/{vm_id})."""
    literal: set[str] = set()
    templated: set[str] = set()
    iterate = getattr(routing, "iter_route_contexts", None)
    for route in iterate(app.routes) if iterate else app.routes:
        match, _ = route.matches({**scope, "method": "GET"})
        methods = getattr(route, "methods", None)
        if match != Match.NONE and methods:
            exact = getattr(route, "path_format", None) == scope.get("path")
            (literal if exact else templated).update(methods)
    return sorted(literal or templated)


def http_exception_response(exc: StarletteHTTPException) -> JSONResponse:
    """FastAPI/Starlette's own errors (unknown route, wrong method) in our body shape."""
    return JSONResponse(
        error_body(
            str(exc.detail),
            _CODE_OF_STATUS.get(exc.status_code, "error"),
            exc.status_code in (429, 503),
        ),
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


def parse_error(resp: httpx.Response) -> tuple[str, str, bool]:
    """(detail, code, retry) of an error answer; tolerant of bodies in no known shape
    (a proxy's HTML page), which are retried only when the status says so."""
    default_retry = resp.status_code >= 500 or resp.status_code == 429
    try:
        body = resp.json()
    except ValueError:
        body = None
    fallback_code = _CODE_OF_STATUS.get(resp.status_code, "error")
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        # The other party may be a hostile agent, and its detail is kept (a VM's
        # failureReason) and passed on in our own errors, to developers' terminals and
        # pages: one bounded line, without escapes or invisible characters.
        code = body.get("code")
        return (
            printable_line(body["detail"], MAX_RELAYED_DETAIL) or f"HTTP {resp.status_code}",
            code if isinstance(code, str) and _CODE_RE.fullmatch(code) else fallback_code,
            bool(body.get("retry", default_retry)),
        )
    text = printable_line(resp.text[: 2 * MAX_RELAYED_DETAIL], 300) or f"HTTP {resp.status_code}"
    return text, fallback_code, default_retry


def error_detail(resp: httpx.Response) -> str:
    """The message of an error answer."""
    return parse_error(resp)[0]
