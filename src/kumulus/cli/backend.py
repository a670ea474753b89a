"""`kumulus backend ...`: running and operating the backend (keys, backups, chain state)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kumulus.cli.agent import setup_logging
from kumulus.cli.exits import failure
from kumulus.config import BackendSettings

app = typer.Typer(help="The backend (API for providers, developers, agents).", no_args_is_help=True)


@app.command("run")
def backend_run(
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
) -> None:
    """Run the backend API and the web consoles (applies database migrations first)."""
    import uvicorn

    from kumulus.backend.backend_keys import KeysMismatchError
    from kumulus.server import create_server

    setup_logging()
    settings = BackendSettings()
    try:
        server = create_server(settings)
    except KeysMismatchError as exc:
        raise failure(exc.detail, code=78) from exc  # EX_CONFIG: a restart cannot fix it
    uvicorn.run(
        server,
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
        # Client addresses come from the backend's own `trusted_proxies` walk
        # (backend/client_ip.py), never from uvicorn's guess about X-Forwarded-*.
        proxy_headers=False,
    )


@app.command("init-keys")
def backend_init_keys(
    directory: Annotated[Path, typer.Argument(help="where to write the key files (0600)")],
) -> None:
    """Make the platform's keys once, for every replica to load (e.g. as systemd
    credentials): backend, payout, anchor and deposit mnemonics. Existing files are kept."""
    from kumulus.core.signing import create_secret_file, load_keypair, new_mnemonic

    for name in ("backend", "payout", "anchor", "deposit"):
        path = directory / f"{name}-mnemonic"
        made = create_secret_file(path, new_mnemonic())
        address = load_keypair(path).ss58_address
        typer.echo(f"{name:8} {address}  {path}{'' if made else ' (kept)'}")


@app.command("rescan-deposits")
def backend_rescan_deposits(
    from_block: Annotated[
        int, typer.Option(help="process finalized blocks again from here", min=0)
    ],
) -> None:
    """Make the deposit watcher go over blocks again (deposits are never credited twice)."""
    from kumulus.backend.db import Database, migrate
    from kumulus.backend.deposits import move_cursor

    settings = BackendSettings()
    db = Database(settings.db_url)
    migrate(db.engine)
    with db.session() as s:
        move_cursor(s, from_block - 1, None, None)
        s.commit()
    typer.echo(f"deposits will be scanned again from block {from_block}")


@app.command("reset-chain-state")
def backend_reset_chain_state(
    yes: Annotated[bool, typer.Option("--yes", help="do not ask for confirmation")] = False,
) -> None:
    """Forget the settlement state of the chain this backend followed, so that it adopts
    the chain it connects to next (after a chain was restarted or replaced). Says what it
    forgets and asks first; paid payouts and deposits are kept as history."""
    from kumulus.backend import chain_identity
    from kumulus.backend.db import Database, migrate

    settings = BackendSettings()
    db = Database(settings.db_url)
    migrate(db.engine)
    try:
        with db.session() as s:
            plan = chain_identity.plan_reset(s)
            typer.echo("\n".join(plan.describe()))
            if not yes and not typer.confirm("Forget this?", default=False):
                raise failure("nothing changed")
            chain_identity.reset(s, plan)
    finally:
        db.engine.dispose()
    typer.echo("settlement state reset: the backend adopts the chain it connects to next")


@app.command("backup")
def backend_backup(
    file: Annotated[Path, typer.Argument(help="where to write the backup")],
) -> None:
    """Back up the database (while the backend runs) with the addresses of its keys; the
    key files themselves are not in it: keep them safe separately."""
    from kumulus.backend import backups

    try:
        manifest = backups.backup(BackendSettings(), file)
    except backups.BackupError as exc:
        raise failure(exc.detail) from exc
    typer.echo(f"backed up the {manifest.database} database (schema {manifest.revision}) to {file}")
    for name, address in sorted(manifest.addresses.items()):
        typer.echo(f"  {name} key: {address}")


@app.command("restore")
def backend_restore(
    file: Annotated[Path, typer.Argument(help="a file `kumulus backend backup` wrote")],
    force: Annotated[
        bool, typer.Option("--force", help="restore even if this backend's keys differ")
    ] = False,
) -> None:
    """Replace the database with a backup (stop the backend first). Payouts then wait until
    those the chain made since the backup are recorded, so none is paid twice."""
    from kumulus.backend import backups
    from kumulus.core.errors import KumulusError

    try:
        manifest = backups.restore(BackendSettings(), file, force=force)
    except KumulusError as exc:
        raise failure(exc.detail) from exc
    typer.echo(
        f"restored the backup of {manifest.created_at}; payouts resume once those sent since "
        "then are found on chain (kumulus backend settlement shows it)"
    )


@app.command("settlement")
def backend_settlement() -> None:
    """Show the settlement state: the pinned chain, and whatever stops or delays deposits
    and payouts (with the reasons)."""
    from kumulus.backend import settlement_state
    from kumulus.backend.db import Database, migrate

    settings = BackendSettings()
    db = Database(settings.db_url)
    migrate(db.engine)
    try:
        with db.session() as s:
            states = settlement_state.all_states(s)
    finally:
        db.engine.dispose()
    typer.echo(f"pinned chain (genesis): {states.pop(settlement_state.GENESIS, 'none yet')}")
    checked = states.pop(settlement_state.LEDGER_VIOLATIONS, None)
    typer.echo(f"ledger check: {'not run yet' if checked is None else checked + ' violation(s)'}")
    if not states:
        typer.echo("settlement runs: nothing is stopped or waiting")
    for name, reason in sorted(states.items()):
        colour = typer.colors.RED if name.startswith("blocked:") else typer.colors.YELLOW
        typer.secho(f"{name}: {reason}", fg=colour)


@app.command("jobs")
def backend_jobs(
    url: Annotated[
        str | None, typer.Option(help="the backend process to ask (default: this machine's)")
    ] = None,
    token_file: Annotated[
        Path | None, typer.Option(help="the metrics token, for a backend on another machine")
    ] = None,
) -> None:
    """Show each named job of one backend process: runs, failures (in a row: the alert's
    figure), last duration, last success and who holds its lease (any replica)."""
    import httpx

    from kumulus.job_table import parse, render

    settings = BackendSettings()
    base = (url or f"http://127.0.0.1:{settings.port}").rstrip("/")
    headers = {}
    if token_file is not None:
        headers["Authorization"] = f"Bearer {token_file.read_text().strip()}"
    try:
        resp = httpx.get(f"{base}/metrics", headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        raise failure(f"cannot reach {base}: {exc}") from exc
    if resp.status_code != 200:
        raise failure(f"{base}/metrics answered {resp.status_code}: {resp.text[:200]}")
    typer.echo(render(parse(resp.text)))
