"""`kumulus token ls | create | revoke`: API tokens (e.g. for CI: KUMULUS_TOKEN)."""

from __future__ import annotations

from typing import Annotated

import typer

from kumulus.cli import session
from kumulus.cli.output import JsonFlag, as_data, emit_json, table

app = typer.Typer(help="Your API tokens (for scripts and CI: KUMULUS_TOKEN).", no_args_is_help=True)


@app.command("ls")
def token_ls(json_out: JsonFlag = False) -> None:
    """Your tokens (never their secret: only its first characters)."""
    with session.api(json_out) as api:
        tokens = api.tokens()
    if json_out:
        emit_json(tokens)
        return
    columns = [("id", "ID"), ("name", "NAME"), ("prefix", "PREFIX"), ("expiresAt", "EXPIRES"),
               ("lastUsedAt", "LAST USED"), ("revokedAt", "REVOKED")]  # fmt: skip
    table(as_data(tokens), columns)


@app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="what it is for, e.g. ci")],
    json_out: JsonFlag = False,
) -> None:
    """Make a token and print it once (only its hash is kept)."""
    with session.api(json_out) as api:
        token = api.create_token(name)
    if json_out:
        emit_json(token)
        return
    typer.echo(token.token)
    typer.echo(f"token {token.id} ({name}) expires {token.expires_at:%Y-%m-%d}", err=True)


@app.command("revoke")
def token_revoke(
    token_id: Annotated[int, typer.Argument(help="its ID (kumulus token ls)")],
    json_out: JsonFlag = False,
) -> None:
    """Revoke a token at once."""
    with session.api(json_out) as api:
        api.revoke_token(token_id)
    if json_out:
        emit_json({"id": token_id, "revoked": True})
        return
    typer.echo(f"revoked token {token_id}")
