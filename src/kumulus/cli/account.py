"""`kumulus signup | login | logout | whoami | balance`: the account."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated

import typer

from kumulus.cli import session
from kumulus.cli.exits import Exit, fail
from kumulus.cli.output import JsonFlag, emit_json, fields, printable, table
from kumulus.client import ApiError

Backend = Annotated[
    str | None, typer.Option(help="backend URL (default: KUMULUS_BACKEND, or the last one)")
]
PasswordStdin = Annotated[bool, typer.Option(help="read the password from stdin")]


def _password(stdin: bool) -> str:
    if stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        fail("no terminal to ask for the password: use --password-stdin", Exit.USAGE)
    return getpass.getpass("Password: ")


def signup(
    email: Annotated[str, typer.Option()],
    backend: Backend = None,
    role: Annotated[str, typer.Option(help="developer or provider")] = "developer",
    password_stdin: PasswordStdin = False,
    json_out: JsonFlag = False,
) -> None:
    """Create an account."""
    url = session.backend_url(backend, json_out)
    with session.api(json_out, anonymous_to=url) as api:
        account = api.signup(email, _password(password_stdin), role)
    if json_out:
        emit_json(account)
        return
    typer.echo(f"account {email} created; now: kumulus login --backend {url} --email {email}")


def login(
    email: Annotated[str, typer.Option()],
    backend: Backend = None,
    password_stdin: PasswordStdin = False,
    json_out: JsonFlag = False,
) -> None:
    """Log in; the API token is kept in ~/.config/kumulus/cli.json (0600)."""
    url = session.backend_url(backend, json_out)
    with session.api(json_out, anonymous_to=url) as api:
        result = api.login(email, _password(password_stdin))
    session.save(url, result.token)
    if json_out:  # never the token itself: it is in the config file
        emit_json(result.account)
        return
    typer.echo(
        f"logged in as {email} ({result.account.role}); "
        f"the token expires {result.expires_at:%Y-%m-%d %H:%M} UTC"
    )


def logout(json_out: JsonFlag = False) -> None:
    """Revoke this CLI's token on the backend and forget it here. A token from
    KUMULUS_TOKEN is revoked too (it is the one in use)."""
    current = session.current(json_out)
    revoked = False
    with session.api(json_out) as api:
        try:
            mine = [t for t in api.tokens() if current.token.startswith(t.prefix)]
            for token in mine:
                api.revoke_token(token.id)
            revoked = bool(mine)
        except ApiError as exc:
            if exc.status != 401:  # already expired or revoked: forgetting it is enough
                raise
    forgot = session.forget()
    if json_out:
        emit_json({"revoked": revoked, "forgotten": forgot})
        return
    typer.echo("logged out" + ("" if revoked else " (the backend no longer knew the token)"))


def whoami(json_out: JsonFlag = False) -> None:
    """Who the token belongs to, and which backend it is for."""
    backend = session.current(json_out).backend
    with session.api(json_out) as api:
        me = api.me()
    if json_out:
        emit_json(me)
        return
    fields([("email", me.email), ("role", me.role), ("id", me.id), ("backend", backend)])


def balance(json_out: JsonFlag = False) -> None:
    """Your balance, what you spend (or earn) per hour, and recent ledger entries."""
    with session.api(json_out) as api:
        view = api.billing()
    if json_out:
        emit_json(view)
        return
    typer.echo(f"balance: {view.balance}   per hour: {view.per_hour}   "
               f"on-chain settlement: {view.settlement}")  # fmt: skip
    if view.warning:
        typer.secho(printable(view.warning), fg=typer.colors.YELLOW)
    rows = [e.model_dump(mode="json", by_alias=True) for e in view.entries[:20]]
    table(rows, [("createdAt", "WHEN"), ("kind", "KIND"), ("amount", "AMOUNT"),
                 ("vmId", "VM"), ("memo", "MEMO")])  # fmt: skip
