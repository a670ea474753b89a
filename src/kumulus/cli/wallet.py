"""`kumulus wallet ...`: the provider's sr25519 wallet key, and deposits."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Annotated

import typer

from kumulus.cli.agent import read_mnemonic
from kumulus.cli.exits import failure
from kumulus.config import AgentSettings

app = typer.Typer(help="Your sr25519 wallet key (signing, deposits).", no_args_is_help=True)


def _store_mnemonic(mnemonic: str) -> str:
    from kumulus.core.signing import keypair_from_mnemonic, write_secret_file

    keypair = keypair_from_mnemonic(" ".join(mnemonic.split()))
    path = AgentSettings().mnemonic_path
    write_secret_file(path, " ".join(mnemonic.split()))
    return str(keypair.ss58_address)


@app.command("import")
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
        raise failure("a wallet is stored already; pass --force to replace it")
    if mnemonic_file is None:
        if not sys.stdin.isatty():
            raise failure("no terminal to ask on: pass --mnemonic-file FILE (or - for stdin)", 2)
        mnemonic = getpass.getpass("Wallet mnemonic (input hidden): ")
    elif str(mnemonic_file) == "-":
        mnemonic = sys.stdin.readline()
    else:
        try:
            mnemonic = mnemonic_file.read_text()
        except OSError as exc:
            raise failure(f"cannot read {mnemonic_file}: {exc.strerror}") from exc
    try:
        address = _store_mnemonic(mnemonic)
    except SecretFileError as exc:
        raise failure(str(exc)) from exc
    typer.echo(f"wallet stored; address {address}")


@app.command("new")
def wallet_new() -> None:
    """Create a new wallet mnemonic in the agent's 0600 file (for tests and trials)."""
    from kumulus.core.signing import new_mnemonic

    path = AgentSettings().mnemonic_path
    if path.exists():
        raise failure(f"{path} exists already; refusing to overwrite a wallet")
    address = _store_mnemonic(new_mnemonic())
    typer.echo(f"new wallet in {path} (back it up); address {address}")


@app.command("address")
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
        raise failure(str(exc)) from exc
    typer.echo(keypair.ss58_address)


@app.command("sign")
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
            phrase = read_mnemonic(mnemonic_file, "Wallet mnemonic (input hidden): ")
            keypair = keypair_from_mnemonic(" ".join(phrase.split()))
    except SecretFileError as exc:
        raise failure(str(exc)) from exc
    signature = keypair.sign(b"<Bytes>" + message.encode() + b"</Bytes>")
    typer.echo(f"address:   {keypair.ss58_address}")
    typer.echo(f"signature: 0x{bytes(signature).hex()}")


@app.command("deposit")
def wallet_deposit(
    amount: Annotated[str, typer.Option(help="tokens to deposit, e.g. 5")],
    mnemonic_file: Annotated[
        Path, typer.Option(help="your wallet's mnemonic (a file only you can read)")
    ],
) -> None:
    """Transfer tokens from your wallet to the platform's deposit address. The wallet must
    be linked to your account first; the backend credits the transfer once it is final."""
    from kumulus.chain.client import ChainClient, ChainError
    from kumulus.cli import session
    from kumulus.core.money import format_amount, parse_amount
    from kumulus.core.signing import SecretFileError, load_keypair

    with session.api() as api:
        info = api.deposit_info()
        linked = {w.address for w in api.wallets()}
    try:
        planck = parse_amount(amount, int(info.token_decimals))
        keypair = load_keypair(mnemonic_file)
    except (ValueError, SecretFileError) as exc:
        raise failure(str(exc)) from exc
    if keypair.ss58_address not in linked:
        raise failure(
            f"wallet {keypair.ss58_address} is not linked to your account: deposits from it "
            "would not be credited"
        )
    try:
        chain = ChainClient(info.chain_url, int(info.ss58_format))
        receipt = chain.transfer(keypair, info.address, planck)
    except ChainError as exc:
        raise failure(str(exc), 8) from exc
    decimals, symbol = int(info.token_decimals), info.token_symbol
    typer.echo(
        f"sent {format_amount(planck, decimals, symbol)} to {info.address} in block "
        f"{receipt.block_number} (fee {format_amount(receipt.fee, decimals, symbol)}); "
        "it shows in `kumulus balance` once the backend has seen the block"
    )
