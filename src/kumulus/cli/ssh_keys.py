"""`kumulus ssh-key add | ls | rm`: the developer's SSH public keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kumulus.cli import session
from kumulus.cli.exits import fail
from kumulus.cli.output import JsonFlag, as_data, emit_json, table

app = typer.Typer(help="Your SSH public keys.", no_args_is_help=True)


@app.command("add")
def key_add(
    path: Annotated[Path, typer.Argument(help="public key file")] = Path("~/.ssh/id_ed25519.pub"),
    name: Annotated[str | None, typer.Option(help="a name for it")] = None,
    json_out: JsonFlag = False,
) -> None:
    """Save an SSH public key."""
    file = path.expanduser()
    try:
        text = file.read_text()
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}", as_json=json_out)
    with session.api(json_out) as api:
        key = api.add_ssh_key(name or file.stem, text)
    if json_out:
        emit_json(key)
        return
    typer.echo(f"added key {key.id} {key.fingerprint}")


@app.command("ls")
def key_ls(json_out: JsonFlag = False) -> None:
    """Your saved keys."""
    with session.api(json_out) as api:
        keys = api.ssh_keys()
    if json_out:
        emit_json(keys)
        return
    table(as_data(keys), [("id", "ID"), ("name", "NAME"), ("fingerprint", "FINGERPRINT")])


@app.command("rm")
def key_rm(key_id: int, json_out: JsonFlag = False) -> None:
    """Remove a saved key (VMs made with it keep it)."""
    with session.api(json_out) as api:
        api.delete_ssh_key(key_id)
    if json_out:
        emit_json({"id": key_id, "removed": True})
        return
    typer.echo(f"removed key {key_id}")
