"""`kumulus agent ...`: the provider agent on this host (run, register, delegate, keys)."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Annotated

import typer

from kumulus.cli.exits import failure
from kumulus.config import AgentSettings

app = typer.Typer(
    help="The provider agent on this host (VM API on port 8000).", no_args_is_help=True
)


def setup_logging() -> None:
    """Text logs, or JSON lines with KUMULUS_LOG_FORMAT=json (core/logs.py)."""
    from kumulus.core import logs

    try:
        logs.configure()
    except ValueError as exc:
        raise failure(str(exc)) from exc


@app.command("run")
def agent_run(
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
) -> None:
    """Run the agent API (and the signed health-stats collector)."""
    import uvicorn

    from kumulus.agent.app import create_app
    from kumulus.agent.errors import AgentError

    setup_logging()
    settings = AgentSettings()
    try:
        api = create_app(settings)
    except AgentError as exc:
        raise failure(exc.detail) from exc
    uvicorn.run(
        api,
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
        access_log=True,
    )


@app.command("token")
def agent_token() -> None:
    """Print the agent's admin token (created, mode 0600, on first use)."""
    from kumulus.agent.auth import ensure_admin_token
    from kumulus.core.signing import SecretFileError

    settings = AgentSettings()
    try:
        typer.echo(ensure_admin_token(settings.token_path))
    except (SecretFileError, PermissionError) as exc:
        raise failure(str(exc)) from exc


@app.command("pin-backend")
def agent_pin_backend(
    address: Annotated[str, typer.Argument(help="the backend's ss58 address")],
) -> None:
    """Trust requests signed by this backend key (replaces any earlier pin)."""
    from kumulus.core.signing import SignatureError, public_key_of

    try:
        public_key_of(address)
    except SignatureError as exc:
        raise failure(exc.reason) from exc
    from kumulus.agent.registration import pin_backend

    pin_backend(AgentSettings().backend_key_path, address)
    typer.echo(f"pinned backend {address}")


@app.command("register")
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
        raise failure(
            f"this host stores a wallet ({settings.mnemonic_path}): a new host signs with a "
            "key of its own and the wallet stays off it; remove that file, restart the agent, "
            "register again, then delegate with the wallet: kumulus agent delegate"
        )
    try:
        keypair = load_keypair(settings.host_key_path)
    except SecretFileError as exc:
        raise failure(f"{exc}; make this host's key first: kumulus agent host-key") from exc
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
        raise failure(f"the agent does not answer at {agent_url} (start it first): {exc}") from exc
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
        raise failure(str(exc)) from exc
    typer.echo(f"registered as host {reg.host_id}; pinned backend key {reg.backend_address}")
    typer.echo(
        f"host key {keypair.ss58_address} is pending: delegate it with the wallet "
        "(here: kumulus agent delegate; or GET /v1/provider/hosts/<id>/delegation)"
    )


@app.command("host-key")
def agent_host_key() -> None:
    """Make this host's own key (0600, once) and print its address."""
    from kumulus.agent.host_key import ensure_host_key

    typer.echo(ensure_host_key(AgentSettings()).ss58_address)


def read_mnemonic(mnemonic_file: Path | None, prompt: str) -> str:
    """A mnemonic from a file, stdin ('-') or a prompt without echo; never an argument."""
    if mnemonic_file is None:
        if not sys.stdin.isatty():
            raise failure("no terminal to ask on: pass --mnemonic-file FILE (or - for stdin)", 2)
        return getpass.getpass(prompt)
    if str(mnemonic_file) == "-":
        return sys.stdin.readline()
    try:
        return mnemonic_file.read_text()
    except OSError as exc:
        raise failure(f"cannot read {mnemonic_file}: {exc.strerror}") from exc


@app.command("delegate")
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
        raise failure("this host is not registered yet: kumulus agent register")
    host_key = ensure_host_key(settings).ss58_address
    until = (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)
    message = delegation_text(reg.host_id, host_key, until)
    try:
        wallet = keypair_from_mnemonic(
            " ".join(read_mnemonic(mnemonic_file, "Wallet mnemonic (input hidden): ").split())
        )
    except SecretFileError as exc:
        raise failure(str(exc)) from exc
    signature = "0x" + bytes(wallet.sign(message.encode())).hex()
    try:
        resp = httpx.post(
            reg.backend_url + "/v1/hosts/delegation",
            json={"message": message, "signature": signature},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        raise failure(f"cannot reach the backend at {reg.backend_url}: {exc}") from exc
    if resp.status_code != 200:
        raise failure(
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
