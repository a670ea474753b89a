"""`kumulus`: the command line for providers (agent, image, wallet)."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Annotated

import typer

from kumulus import __version__, devcli
from kumulus.config import AgentSettings, BackendSettings

app = typer.Typer(help="Kumulus: a decentralized cloud.", no_args_is_help=True)
agent_app = typer.Typer(help="The provider agent (VM API on port 8000).", no_args_is_help=True)
backend_app = typer.Typer(
    help="The backend (API for providers, developers, agents).", no_args_is_help=True
)
image_app = typer.Typer(help="The VM base image.", no_args_is_help=True)
wallet_app = typer.Typer(help="The provider's sr25519 wallet key.", no_args_is_help=True)
app.add_typer(agent_app, name="agent")
app.add_typer(backend_app, name="backend")
app.add_typer(image_app, name="image")
app.add_typer(wallet_app, name="wallet")
app.add_typer(devcli.key_app, name="ssh-key")
app.add_typer(devcli.vm_app, name="vm")
app.command()(devcli.signup)
app.command()(devcli.login)
app.command()(devcli.balance)
wallet_app.command("deposit")(devcli.wallet_deposit)


def _setup_logging() -> None:
    """Text logs, or JSON lines with KUMULUS_LOG_FORMAT=json (core/logs.py)."""
    from kumulus.core import logs

    try:
        logs.configure()
    except ValueError as exc:
        raise _fail(str(exc)) from exc


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


@app.command()
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


@app.command()
def version() -> None:
    """Print the Kumulus version."""
    typer.echo(__version__)


# -- agent ----------------------------------------------------------------------------------


@agent_app.command("run")
def agent_run(
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
) -> None:
    """Run the agent API (and the signed health-stats collector)."""
    import uvicorn

    from kumulus.agent.app import create_app
    from kumulus.agent.errors import AgentError

    _setup_logging()
    settings = AgentSettings()
    try:
        api = create_app(settings)
    except AgentError as exc:
        raise _fail(exc.detail) from exc
    uvicorn.run(
        api,
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
        access_log=True,
    )


@agent_app.command("token")
def agent_token() -> None:
    """Print the agent's admin token (created, mode 0600, on first use)."""
    from kumulus.agent.auth import ensure_admin_token
    from kumulus.core.signing import SecretFileError

    settings = AgentSettings()
    try:
        typer.echo(ensure_admin_token(settings.token_path))
    except (SecretFileError, PermissionError) as exc:
        raise _fail(str(exc)) from exc


@agent_app.command("pin-backend")
def agent_pin_backend(
    address: Annotated[str, typer.Argument(help="the backend's ss58 address")],
) -> None:
    """Trust requests signed by this backend key (replaces any earlier pin)."""
    from kumulus.core.signing import SignatureError, public_key_of

    try:
        public_key_of(address)
    except SignatureError as exc:
        raise _fail(exc.reason) from exc
    from kumulus.agent.registration import pin_backend

    pin_backend(AgentSettings().backend_key_path, address)
    typer.echo(f"pinned backend {address}")


@agent_app.command("register")
def agent_register(
    backend: Annotated[str, typer.Option(help="backend URL, e.g. https://kumulus.example")],
    token: Annotated[str, typer.Option(help="one-time provider token (provider console)")],
    public_ip: Annotated[
        str | None, typer.Option(help="IP/name developers ssh to (default: SSH_PUBLIC_HOST)")
    ] = None,
    api_url: Annotated[str | None, typer.Option(help="URL the backend calls this agent on")] = None,
    backend_address: Annotated[
        str | None,
        typer.Option(help="the backend's ss58 address, for a token that carries none"),
    ] = None,
) -> None:
    """Register this host with a backend (signed by its host key) and pin the backend's key:
    the one the token carries (or --backend-address), refusing an answer with another.

    The agent must be running (its /v1/host reports capacity and disk-quota support)."""
    import httpx

    from kumulus.agent.auth import ensure_admin_token
    from kumulus.agent.registration import RegistrationError, register
    from kumulus.core.signing import SecretFileError, load_keypair

    settings = AgentSettings()
    # A new host registers with its own key (pending until the wallet delegates it:
    # `kumulus agent delegate`); the backend refuses one signed by the wallet. A wallet
    # stored here would be what the running agent signs with (agent/host_key.signing_key).
    if settings.mnemonic_path.exists():
        raise _fail(
            f"this host stores a wallet ({settings.mnemonic_path}): a new host signs with a "
            "key of its own and the wallet stays off it; remove that file, restart the agent, "
            "register again, then delegate with the wallet: kumulus agent delegate"
        )
    try:
        keypair = load_keypair(settings.host_key_path)
    except SecretFileError as exc:
        raise _fail(f"{exc}; make this host's key first: kumulus agent host-key") from exc
    local = settings.host if settings.host not in ("0.0.0.0", "::") else "127.0.0.1"  # noqa: S104
    agent_url = f"http://{local}:{settings.port}"
    try:
        info = httpx.get(
            agent_url + "/v1/host",
            headers={"Authorization": f"Bearer {ensure_admin_token(settings.token_path)}"},
            timeout=30,
        )
        info.raise_for_status()
    except httpx.HTTPError as exc:
        raise _fail(f"the agent does not answer at {agent_url} (start it first): {exc}") from exc
    ip = public_ip or settings.ssh_public_host or local
    try:
        reg = register(
            state_dir=settings.state_dir,
            backend_key_file=settings.backend_key_path,
            keypair=keypair,
            backend_url=backend,
            provider_token=token,
            # An IPv6 address is bracketed in a URL (the backend refuses it otherwise).
            api_url=api_url or f"http://{f'[{ip}]' if ':' in ip else ip}:{settings.port}",
            public_ip=ip,
            host_info=info.json(),
            backend_address=backend_address,
        )
    except RegistrationError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"registered as host {reg.host_id}; pinned backend key {reg.backend_address}")
    typer.echo(
        f"host key {keypair.ss58_address} is pending: delegate it with the wallet "
        "(here: kumulus agent delegate; or GET /v1/provider/hosts/<id>/delegation)"
    )


@agent_app.command("host-key")
def agent_host_key() -> None:
    """Make this host's own key (0600, once) and print its address."""
    from kumulus.agent.host_key import ensure_host_key

    typer.echo(ensure_host_key(AgentSettings()).ss58_address)


def _read_mnemonic(mnemonic_file: Path | None, prompt: str) -> str:
    """A mnemonic from a file, stdin ('-') or a prompt without echo; never an argument."""
    if mnemonic_file is None:
        if not sys.stdin.isatty():
            raise _fail("no terminal to ask on: pass --mnemonic-file FILE (or - for stdin)", 2)
        return getpass.getpass(prompt)
    if str(mnemonic_file) == "-":
        return sys.stdin.readline()
    try:
        return mnemonic_file.read_text()
    except OSError as exc:
        raise _fail(f"cannot read {mnemonic_file}: {exc.strerror}") from exc


@agent_app.command("delegate")
def agent_delegate(
    mnemonic_file: Annotated[
        Path | None,
        typer.Option(help="the wallet's mnemonic file ('-' = stdin); default: ask, hidden"),
    ] = None,
    days: Annotated[int, typer.Option(min=1, max=730, help="days the delegation lasts")] = 365,
) -> None:
    """Delegate this host's key with the provider's wallet (signed here, sent to the
    backend); the mnemonic is used once and never stored. A wallet stored on this host
    (set up before host keys) is removed once the delegation is accepted."""
    from datetime import UTC, datetime, timedelta

    import httpx

    from kumulus.agent.host_key import ensure_host_key
    from kumulus.agent.registration import load_registration
    from kumulus.core.delegation import delegation_text
    from kumulus.core.http import error_detail
    from kumulus.core.signing import SecretFileError, keypair_from_mnemonic

    settings = AgentSettings()
    reg = load_registration(settings.state_dir)
    if reg is None:
        raise _fail("this host is not registered yet: kumulus agent register")
    host_key = ensure_host_key(settings).ss58_address
    until = (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)
    message = delegation_text(reg.host_id, host_key, until)
    try:
        wallet = keypair_from_mnemonic(
            " ".join(_read_mnemonic(mnemonic_file, "Wallet mnemonic (input hidden): ").split())
        )
    except SecretFileError as exc:
        raise _fail(str(exc)) from exc
    signature = "0x" + bytes(wallet.sign(message.encode())).hex()
    try:
        resp = httpx.post(
            reg.backend_url + "/v1/hosts/delegation",
            json={"message": message, "signature": signature},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        raise _fail(f"cannot reach the backend at {reg.backend_url}: {exc}") from exc
    if resp.status_code != 200:
        raise _fail(
            f"the backend refused the delegation ({resp.status_code}): {error_detail(resp)}"
        )
    typer.echo(f"host key {host_key} delegated by {wallet.ss58_address} until {until:%Y-%m-%d}")
    if settings.mnemonic_path.exists():
        # A legacy host's stored wallet: the backend hears this host by its key from now
        # on, and a wallet left here is what stealing the host would be worth.
        settings.mnemonic_path.unlink()
        typer.echo(
            f"removed the wallet stored on this host ({settings.mnemonic_path}): restart the "
            "agent so that it signs with its host key"
        )


# -- backend --------------------------------------------------------------------------------


@backend_app.command("run")
def backend_run(
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
) -> None:
    """Run the backend API and the web consoles (applies database migrations first)."""
    import uvicorn

    from kumulus.backend.backend_keys import KeysMismatchError
    from kumulus.server import create_server

    _setup_logging()
    settings = BackendSettings()
    try:
        server = create_server(settings)
    except KeysMismatchError as exc:
        raise _fail(exc.detail, code=78) from exc  # EX_CONFIG: a restart cannot fix it
    uvicorn.run(
        server,
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
        # Client addresses come from the backend's own `trusted_proxies` walk
        # (backend/client_ip.py), never from uvicorn's guess about X-Forwarded-*.
        proxy_headers=False,
    )


@backend_app.command("init-keys")
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


@backend_app.command("rescan-deposits")
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


@backend_app.command("reset-chain-state")
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
                raise _fail("nothing changed")
            chain_identity.reset(s, plan)
    finally:
        db.engine.dispose()
    typer.echo("settlement state reset: the backend adopts the chain it connects to next")


@backend_app.command("backup")
def backend_backup(
    file: Annotated[Path, typer.Argument(help="where to write the backup")],
) -> None:
    """Back up the database (while the backend runs) with the addresses of its keys; the
    key files themselves are not in it: keep them safe separately."""
    from kumulus.backend import backups

    try:
        manifest = backups.backup(BackendSettings(), file)
    except backups.BackupError as exc:
        raise _fail(exc.detail) from exc
    typer.echo(f"backed up the {manifest.database} database (schema {manifest.revision}) to {file}")
    for name, address in sorted(manifest.addresses.items()):
        typer.echo(f"  {name} key: {address}")


@backend_app.command("restore")
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
        raise _fail(exc.detail) from exc
    typer.echo(
        f"restored the backup of {manifest.created_at}; payouts resume once those sent since "
        "then are found on chain (kumulus backend settlement shows it)"
    )


@backend_app.command("settlement")
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


@backend_app.command("jobs")
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
        raise _fail(f"cannot reach {base}: {exc}") from exc
    if resp.status_code != 200:
        raise _fail(f"{base}/metrics answered {resp.status_code}: {resp.text[:200]}")
    typer.echo(render(parse(resp.text)))


@app.command("verify")
def verify_record(
    proof_file: Annotated[Path, typer.Argument(help="a proof document (GET /v1/anchors/...)")],
    chain: Annotated[
        str | None, typer.Option(help="a node you trust (default: the document's, with a warning)")
    ] = None,
    signer: Annotated[
        str | None,
        typer.Option(help="the platform's anchor address (GET /healthz: anchorAddress)"),
    ] = None,
) -> None:
    """Check a usage record or reputation score against the root anchored on chain, without
    trusting the backend: the Merkle proof must lead to the root, the root must be in a
    remark signed by the platform's anchor key, in a finalized block of the chain."""
    import json

    from kumulus.chain.client import ChainClient, ChainError
    from kumulus.core.merkle import verify

    try:
        doc = json.loads(proof_file.read_text())
        record, proof, root = doc["record"], [tuple(p) for p in doc["proof"]], doc["root"]
        remark, block_hash = doc["remark"].encode(), doc["blockHash"]
        number = int(doc["blockNumber"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _fail(f"not a proof document: {exc}") from exc
    if not verify(record, proof, root) or not remark.startswith(
        f"kumulus-anchor:v1:{root}:".encode()
    ):
        raise _fail("NOT VERIFIED: the record does not belong to the anchored root")
    expected_signer = signer or doc.get("anchorAddress")
    if chain is None or signer is None:
        typer.secho(
            "warning: trusting the document for the node URL or the anchor address; pass "
            "--chain and --signer from sources you trust",
            err=True,
            fg=typer.colors.YELLOW,
        )
    try:
        client = ChainClient(chain or doc["chainUrl"])
        canonical = client.block_hash(number) == block_hash
        final = number <= client.finalized_number()
        on_chain = client.remarks(block_hash)
    except ChainError as exc:
        raise _fail(str(exc)) from exc
    if not canonical or not final:
        raise _fail(f"NOT VERIFIED: block {number} {block_hash} is not a finalized block")
    if not any(
        data == remark
        and (expected_signer is None or client.same_account(who or "", expected_signer))
        for who, data in on_chain
    ):
        raise _fail(
            f"NOT VERIFIED: block {number} carries no anchor of root {root} by the platform"
        )
    typer.echo(f"verified: record is in the digest {root} anchored in block {number}")


# -- image ----------------------------------------------------------------------------------


@image_app.command("build")
def image_build(
    offline: Annotated[bool, typer.Option(help="skip the registry; debootstrap")] = False,
    online: Annotated[bool, typer.Option(help="only FROM ubuntu:24.04")] = False,
    force: Annotated[bool, typer.Option(help="rebuild even if this version exists")] = False,
    mirror: Annotated[str, typer.Option(help="Debian mirror for offline builds")] = (
        "http://deb.debian.org/debian"
    ),
) -> None:
    """Build the VM base image once (reused while its version matches)."""
    import docker
    from docker.errors import DockerException

    from kumulus.agent.images import ImageBuildError, ensure_image

    if offline and online:
        raise _fail("choose --offline or --online, not both", 2)
    settings = AgentSettings()
    try:
        client = (
            docker.DockerClient(base_url=settings.docker_host)
            if settings.docker_host
            else docker.from_env()
        )
        how = ensure_image(
            client,
            settings.image,
            lambda line: typer.echo(f"[image] {line}"),
            mode="offline" if offline else "online" if online else "auto",
            mirror=mirror,
            force=force,
        )
    except (ImageBuildError, DockerException) as exc:
        raise _fail(f"image build failed: {exc}") from exc
    typer.echo(f"{settings.image} ready ({how})")


# -- wallet ---------------------------------------------------------------------------------


def _store_mnemonic(mnemonic: str) -> str:
    from kumulus.core.signing import keypair_from_mnemonic, write_secret_file

    keypair = keypair_from_mnemonic(" ".join(mnemonic.split()))
    path = AgentSettings().mnemonic_path
    write_secret_file(path, " ".join(mnemonic.split()))
    return str(keypair.ss58_address)


@wallet_app.command("import")
def wallet_import(
    mnemonic_file: Annotated[
        Path | None,
        typer.Option(help="read the mnemonic from this file ('-' = stdin) instead of a prompt"),
    ] = None,
    force: Annotated[bool, typer.Option(help="replace a wallet stored before")] = False,
) -> None:
    """Store the provider's wallet mnemonic (0600) for signing; prints the address only.

    The mnemonic is never accepted as a command-line argument (it would show in `ps`)."""
    from kumulus.core.signing import SecretFileError

    if AgentSettings().mnemonic_path.exists() and not force:
        raise _fail("a wallet is stored already; pass --force to replace it")
    if mnemonic_file is None:
        if not sys.stdin.isatty():
            raise _fail("no terminal to ask on: pass --mnemonic-file FILE (or - for stdin)", 2)
        mnemonic = getpass.getpass("Wallet mnemonic (input hidden): ")
    elif str(mnemonic_file) == "-":
        mnemonic = sys.stdin.readline()
    else:
        try:
            mnemonic = mnemonic_file.read_text()
        except OSError as exc:
            raise _fail(f"cannot read {mnemonic_file}: {exc.strerror}") from exc
    try:
        address = _store_mnemonic(mnemonic)
    except SecretFileError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(f"wallet stored; address {address}")


@wallet_app.command("new")
def wallet_new() -> None:
    """Create a new wallet mnemonic in the agent's 0600 file (for tests and trials)."""
    from kumulus.core.signing import new_mnemonic

    path = AgentSettings().mnemonic_path
    if path.exists():
        raise _fail(f"{path} exists already; refusing to overwrite a wallet")
    address = _store_mnemonic(new_mnemonic())
    typer.echo(f"new wallet in {path} (back it up); address {address}")


@wallet_app.command("address")
def wallet_address(
    mnemonic_file: Annotated[
        Path | None,
        typer.Option(help="derive from this mnemonic file ('-' = stdin) instead of the stored one"),
    ] = None,
) -> None:
    """Print the ss58 address of the stored wallet (or of a mnemonic, without storing it)."""
    from kumulus.core.signing import SecretFileError, keypair_from_mnemonic, load_keypair

    try:
        if mnemonic_file is not None and str(mnemonic_file) == "-":
            keypair = keypair_from_mnemonic(" ".join(sys.stdin.readline().split()))
        else:
            keypair = load_keypair(mnemonic_file or AgentSettings().mnemonic_path)
    except SecretFileError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(keypair.ss58_address)


@wallet_app.command("sign")
def wallet_sign(
    message: Annotated[str, typer.Argument(help="the exact text to sign (e.g. a challenge)")],
    mnemonic_file: Annotated[
        Path | None,
        typer.Option(help="wallet mnemonic file (0600) or '-' (stdin); default: ask, hidden"),
    ] = None,
) -> None:
    """Sign a message with the wallet (sr25519, as the browser extensions' signRaw does)
    and print the address and the signature, e.g. to link the wallet or delegate a host key
    in the console. Without a stored wallet or --mnemonic-file, asks for the mnemonic
    without echo ('-' reads it from stdin); it is never stored."""
    from kumulus.core.signing import SecretFileError, keypair_from_mnemonic, load_keypair

    stored = AgentSettings().mnemonic_path
    try:
        if mnemonic_file is None and stored.exists():
            keypair = load_keypair(stored)
        elif mnemonic_file is not None and str(mnemonic_file) != "-":
            keypair = load_keypair(mnemonic_file)
        else:
            phrase = _read_mnemonic(mnemonic_file, "Wallet mnemonic (input hidden): ")
            keypair = keypair_from_mnemonic(" ".join(phrase.split()))
    except SecretFileError as exc:
        raise _fail(str(exc)) from exc
    signature = keypair.sign(b"<Bytes>" + message.encode() + b"</Bytes>")
    typer.echo(f"address:   {keypair.ss58_address}")
    typer.echo(f"signature: 0x{bytes(signature).hex()}")


if __name__ == "__main__":  # pragma: no cover
    app()
