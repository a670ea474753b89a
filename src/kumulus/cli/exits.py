"""The CLI's exit codes, and the one place an error becomes one (README: Exit codes)."""

from __future__ import annotations

import json
from enum import IntEnum
from typing import NoReturn

import typer

from kumulus.client import ApiError
from kumulus.core.untrusted_text import printable_line


class Exit(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2  # also click's own usage errors; an API 400/422 (a value it refused)
    NOT_FOUND = 3
    CONFLICT = 4  # a conflict, or no host has room
    PAYMENT_REQUIRED = 5
    NOT_ALLOWED = 6  # not logged in, token refused, or forbidden
    NOT_VERIFIED = 7
    RETRYABLE = 8  # rate limited, unavailable, or the network


_OF_STATUS = {
    400: Exit.USAGE,
    422: Exit.USAGE,
    401: Exit.NOT_ALLOWED,
    403: Exit.NOT_ALLOWED,
    402: Exit.PAYMENT_REQUIRED,
    404: Exit.NOT_FOUND,
    409: Exit.CONFLICT,
}


def code_of(error: ApiError) -> Exit:
    """The exit code for an API refusal or failure to reach it."""
    if error.status is None or error.status in (429, 503):
        return Exit.RETRYABLE
    if error.status >= 500:  # e.g. 502 "the host refused": retryable only if it says so
        return Exit.RETRYABLE if error.retry else Exit.ERROR
    return _OF_STATUS.get(error.status, Exit.ERROR)


def fail(
    message: str, code: Exit = Exit.ERROR, *, as_json: bool = False, error_code: str = "error"
) -> NoReturn:
    """End the command with `code`, saying why on stderr: `error: ...`, or with
    `as_json` an error body like the API's ({"detail", "code"})."""
    # Messages carry server text (an agent's detail passed on): one printable line only.
    detail = printable_line(message, 2000) or "failed"
    if as_json:
        typer.echo(json.dumps({"detail": detail, "code": error_code}), err=True)
    else:
        typer.secho(f"error: {detail}", err=True, fg=typer.colors.RED)
    raise typer.Exit(int(code))


def fail_api(error: ApiError, *, as_json: bool = False) -> NoReturn:
    """End the command for an API error: its body on stderr (as JSON with `as_json`)."""
    if as_json:
        typer.echo(json.dumps(error.body()), err=True)
        raise typer.Exit(int(code_of(error)))
    fail(error.detail, code_of(error))


def failure(message: str, code: int = Exit.ERROR) -> typer.Exit:
    """`raise failure(...) from exc`: says why on stderr, as `fail` does, and returns the
    exit to raise (for commands that chain the cause)."""
    detail = printable_line(message, 2000) or "failed"
    typer.secho(f"error: {detail}", err=True, fg=typer.colors.RED)
    return typer.Exit(int(code))
