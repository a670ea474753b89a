"""`kumulus`: the command line of Kumulus. One module per command group; commands parse,
call `BackendClient` (kumulus/client.py) or a service, and print; `kumulus --help` lists
them by who uses them: developers, providers, operators.

Exit codes (cli/exits.py, README: Exit codes): 0 ok, 1 error, 2 usage, 3 not found,
4 conflict or no capacity, 5 payment required, 6 not logged in or forbidden,
7 verification failed, 8 retryable (rate limited, unavailable, network)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kumulus import __version__
from kumulus.cli import (
    account,
    agent,
    anchor,
    backend,
    image,
    provider,
    ssh_keys,
    tokens,
    vm,
    wallet,
)

DEVELOPER = "Developer: your account and VMs"
PROVIDER = "Provider: your hosts and earnings"
OPERATOR = "Operator: run the platform on this machine"

app = typer.Typer(
    help="Kumulus: a decentralized cloud. KUMULUS_BACKEND and KUMULUS_TOKEN override the "
    "backend and token `kumulus login` stored; every command that prints data takes --json.",
    no_args_is_help=True,
)

for command in (account.signup, account.login, account.logout, account.whoami, account.balance):
    app.command(rich_help_panel=DEVELOPER)(command)
app.add_typer(ssh_keys.app, name="ssh-key", rich_help_panel=DEVELOPER)
app.add_typer(vm.app, name="vm", rich_help_panel=DEVELOPER)
app.add_typer(tokens.app, name="token", rich_help_panel=DEVELOPER)
app.add_typer(anchor.app, name="anchor", rich_help_panel=DEVELOPER)
app.command("verify", rich_help_panel=DEVELOPER)(anchor.verify)

app.add_typer(provider.app, name="provider", rich_help_panel=PROVIDER)
app.add_typer(agent.app, name="agent", rich_help_panel=PROVIDER)
app.add_typer(wallet.app, name="wallet", rich_help_panel=PROVIDER)

app.add_typer(backend.app, name="backend", rich_help_panel=OPERATOR)
app.add_typer(image.app, name="image", rich_help_panel=OPERATOR)


# `up` and `version` are single-command groups only so that typer lists the operator's
# panel last (it shows plain commands before groups).
up_app = typer.Typer()
version_app = typer.Typer()


@up_app.callback(invoke_without_command=True)
def up(
    chain_spec: Annotated[
        Path | None,
        typer.Option(help="start a local chopsticks chain from this raw chain spec"),
    ] = None,
) -> None:
    """Run the whole platform on this machine: backend + a local agent as its provider;
    with --chain-spec also a local development chain for deposits and payouts."""
    from kumulus.up import run_up

    run_up(chain_spec)


@version_app.callback(invoke_without_command=True)
def version() -> None:
    """Print the Kumulus version."""
    typer.echo(__version__)


app.add_typer(up_app, name="up", rich_help_panel=OPERATOR)
app.add_typer(version_app, name="version", rich_help_panel=OPERATOR)
