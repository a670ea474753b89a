"""`kumulus up`: the whole platform on one box. Backend + a local agent registered as a
provider host of this machine, both supervised until Ctrl-C. The agent signs with its own
host key, delegated by the local provider's wallet, which stays with the backend's data."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import typer
from substrateinterface import Keypair

from kumulus.agent.auth import ensure_admin_token
from kumulus.agent.host_key import ensure_host_key
from kumulus.agent.registration import load_registration, register
from kumulus.chain.client import ChainClient, ChainError
from kumulus.chain.devnode import DevNode, DevNodeError
from kumulus.config import AgentSettings, BackendSettings
from kumulus.core import child_processes
from kumulus.core.delegation import default_expiry, delegation_text
from kumulus.core.signing import (
    keypair_from_mnemonic,
    load_keypair,
    new_mnemonic,
    read_secret_file,
    write_secret_file,
)

LOCAL_PROVIDER = "local-provider@kumulus.localhost"


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """A component that dies with this process, even when it is killed with SIGKILL."""
    log.parent.mkdir(parents=True, exist_ok=True)
    me = os.getpid()
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "kumulus.cli", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=lambda: child_processes.die_with_parent(me),
        )


def _sweep_leftovers(pidfile: Path) -> None:
    """Stop what an earlier `kumulus up` that died without cleaning up left running (its
    components, holding their ports); refuse while that `kumulus up` itself still runs."""
    records = child_processes.read(pidfile)
    for r in records:
        if r.role == "supervisor" and r.pid != os.getpid() and child_processes.is_alive(r):
            raise typer.Exit(
                _say_fail(f"another kumulus up runs (pid {r.pid}); stop it first (Ctrl-C)")
            )
    for r in child_processes.sweep([r for r in records if r.role != "supervisor"]):
        typer.echo(f"stopped a leftover of an earlier kumulus up: pid {r.pid} ({r.cmdline[-2:]})")
    pidfile.unlink(missing_ok=True)


def _record(pidfile: Path, procs: list[subprocess.Popen[bytes]], node: DevNode | None) -> None:
    found = [child_processes.describe(os.getpid(), "supervisor")]
    found += [child_processes.describe(p.pid) for p in procs]
    if node is not None and node.pid is not None:
        found.append(child_processes.describe(node.pid))
    child_processes.write(pidfile, [r for r in found if r is not None])


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited; see {log}:\n{log.read_text()[-1500:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"did not answer at {url}; see {log}")


def _local_wallet(backend: BackendSettings, agent: AgentSettings) -> Keypair:
    """The local provider's wallet (0600, next to the backend's data, never in the agent's
    state): made on first use; a wallet an earlier `kumulus up` left in the agent's state
    directory is moved here, as provider-setup.sh removes a stored wallet from a host."""
    path = backend.data_dir / "local-provider-wallet"
    if not path.exists():
        old = agent.mnemonic_path
        if old.exists():
            write_secret_file(path, read_secret_file(old))
            old.unlink()
            typer.echo(
                f"moved this machine's wallet from {old} to {path}: the agent no longer holds it"
            )
        else:
            write_secret_file(path, new_mnemonic())
            typer.echo(f"created a wallet for the local provider in {path} (back it up)")
    return keypair_from_mnemonic(read_secret_file(path))


def _local_provider(
    backend_url: str, settings: BackendSettings, agent: AgentSettings, wallet: Keypair
) -> None:
    """Create (once) the provider account of this machine, link its wallet, register the
    agent as its host (signed by the agent's own host key) and delegate that key with the
    wallet, as provider-setup.sh does: the agent never signs with the wallet."""
    host_key = ensure_host_key(agent)
    pw_file = settings.data_dir / "local-provider-password"
    http = httpx.Client(base_url=backend_url, timeout=60)
    if not pw_file.exists():
        write_secret_file(pw_file, secrets.token_urlsafe(18))
        http.post(
            "/v1/auth/signup",
            json={
                "email": LOCAL_PROVIDER,
                "role": "provider",
                "password": read_secret_file(pw_file),
            },
        )
    token = http.post(
        "/v1/auth/login", json={"email": LOCAL_PROVIDER, "password": read_secret_file(pw_file)}
    )
    token.raise_for_status()
    http.headers["Authorization"] = f"Bearer {token.json()['token']}"
    profile = http.get("/v1/provider/profile").json()
    if profile["walletAddress"] != wallet.ss58_address:
        challenge = http.post("/v1/provider/wallet/challenge").json()
        http.post(
            "/v1/provider/wallet/link",
            json={
                "challengeId": challenge["challengeId"],
                "address": wallet.ss58_address,
                "signature": "0x" + bytes(wallet.sign(challenge["message"].encode())).hex(),
                # Needed when this replaces the wallet linked before (a new agent wallet).
                "password": read_secret_file(pw_file),
            },
        ).raise_for_status()
    reg = load_registration(agent.state_dir)
    if reg is None or reg.backend_url != backend_url:
        host_token = http.post("/v1/provider/host-tokens")
        host_token.raise_for_status()
        local = "127.0.0.1"
        info = httpx.get(
            f"http://{local}:{agent.port}/v1/host",
            timeout=30,
            headers={"Authorization": f"Bearer {ensure_admin_token(agent.token_path)}"},
        )
        info.raise_for_status()
        reg = register(
            state_dir=agent.state_dir,
            backend_key_file=agent.backend_key_path,
            keypair=host_key,
            backend_url=backend_url,
            provider_token=host_token.json()["token"],
            api_url=f"http://{local}:{agent.port}",
            public_ip=info.json()["sshPublicHost"],
            host_info=info.json(),
        )
    # On every start: a new year's delegation (a host an earlier `kumulus up` registered
    # signed by the wallet itself moves to its host key here, as at a setup run).
    message = delegation_text(reg.host_id, host_key.ss58_address, default_expiry())
    http.post(
        "/v1/hosts/delegation",
        json={"message": message, "signature": "0x" + bytes(wallet.sign(message.encode())).hex()},
    ).raise_for_status()
    typer.echo(
        f"this machine is provider host {reg.host_id}, signing with its host key "
        f"{host_key.ss58_address} (delegated by wallet {wallet.ss58_address})"
    )


def _wait_online(backend_url: str, settings: BackendSettings, timeout: float) -> None:
    http = httpx.Client(base_url=backend_url, timeout=10)
    token = http.post(
        "/v1/auth/login",
        json={
            "email": LOCAL_PROVIDER,
            "password": read_secret_file(settings.data_dir / "local-provider-password"),
        },
    )
    token.raise_for_status()
    headers = {"Authorization": f"Bearer {token.json()['token']}"}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hosts = http.get("/v1/provider/hosts", headers=headers).json()["items"]
        if any(h["status"] == "online" for h in hosts):
            return
        time.sleep(0.5)
    raise RuntimeError("the local host sent no heartbeat; see the agent log")


def _local_chain(spec: Path, backend: BackendSettings, logs: Path) -> DevNode:
    """A chopsticks chain from `spec`, with the platform's payout and anchor accounts
    funded from //Alice (a development chain's well-known faucet)."""
    node = DevNode(spec, int(os.environ.get("KUMULUS_CHAIN_PORT", "9944")), logs / "chain.log")
    node.start(die_with_parent=True)
    os.environ["KUMULUS_BACKEND_CHAIN_URL"] = node.url  # for the backend we spawn next
    alice = Keypair.create_from_uri("//Alice", ss58_format=backend.ss58_format)
    chain = ChainClient(node.url, backend.ss58_format)
    try:
        for path in (backend.payout_key_file, backend.anchor_key_file):
            assert path is not None
            if not path.exists():
                write_secret_file(path, new_mnemonic())
            address = load_keypair(path).ss58_address
            if chain.free_balance(address) < 100 * 10**backend.token_decimals:
                chain.transfer(alice, address, 1000 * 10**backend.token_decimals)
    finally:
        chain.close()
    return node


def _forget_previous_chain(backend: BackendSettings) -> str:
    """`kumulus up` starts a fresh chain from genesis every time (chopsticks cannot resume
    one: signatures fail after a resume), so the settlement state of the previous run's
    chain is forgotten before the backend starts (chain_identity.reset: the deposit cursor,
    the pinned genesis, unconfirmed payouts; history is kept). Returns what to tell."""
    from kumulus.backend import chain_identity
    from kumulus.backend.db import Database, migrate

    db = Database(backend.db_url)
    try:
        migrate(db.engine)
        with db.session() as s:
            plan = chain_identity.plan_reset(s)
            if plan.genesis is None and plan.cursor is None and not plan.unconfirmed:
                return "no settlement state from an earlier chain"
            chain_identity.reset(s, plan)
    finally:
        db.engine.dispose()
    parts = [f"deposit cursor at block {plan.cursor}"] if plan.cursor is not None else []
    parts.append(f"{len(plan.unconfirmed)} unconfirmed payout(s) refunded")
    return (
        "forgot the previous local chain's settlement state (" + ", ".join(parts) + "); "
        f"kept {plan.paid} paid payout(s) and {plan.deposits} deposit(s) as history"
    )


def run_up(chain_spec: Path | None = None) -> None:
    # A local platform is for trying things: developers get promotional credit to start
    # with (a production backend gives none unless its operator sets it).
    os.environ.setdefault("KUMULUS_BACKEND_SIGNUP_CREDIT", "10")
    # Its agent listens on this machine: a production backend calls public addresses only.
    os.environ.setdefault("KUMULUS_BACKEND_ALLOW_PRIVATE_AGENTS", "true")
    backend = BackendSettings()
    agent = AgentSettings()
    backend_url = f"http://{backend.host}:{backend.port}"
    # The setup command and script are built from the configured public URL only (never a
    # request's Host header); a local platform is reached at its own address.
    os.environ.setdefault("KUMULUS_BACKEND_PUBLIC_URL", backend_url)
    logs = Path(os.environ.get("KUMULUS_LOG_DIR", str(backend.data_dir.parent / "logs")))
    procs: list[subprocess.Popen[bytes]] = []
    node: DevNode | None = None
    pidfile = backend.data_dir / "up.pids"
    _sweep_leftovers(pidfile)
    _record(pidfile, procs, node)
    if chain_spec is not None:
        try:
            node = _local_chain(chain_spec, backend, logs)
        except (DevNodeError, ChainError) as exc:
            raise typer.Exit(_say_fail(f"local chain: {exc}")) from exc
        typer.echo(f"local development chain at {node.url} (chopsticks; log {logs}/chain.log)")
        typer.echo(
            "it is a fresh chain from genesis (chopsticks cannot resume one): "
            + _forget_previous_chain(backend)
        )
    elif not backend.chain_url:
        typer.echo(
            "on-chain settlement is OFF: metering and the ledger work, deposits and payouts "
            "are refused. Enable it with --chain-spec FILE (local chain) or "
            "KUMULUS_BACKEND_CHAIN_URL=wss://... (a network)."
        )
    try:
        b = _spawn(["backend", "run"], logs / "backend.log")
        procs.append(b)
        _record(pidfile, procs, node)
        _wait_http(backend_url + "/healthz", b, logs / "backend.log")
        wallet = _local_wallet(backend, agent)
        ensure_host_key(agent)  # before the agent starts: it signs with it from the start
        a = _spawn(["agent", "run"], logs / "agent.log")
        procs.append(a)
        _record(pidfile, procs, node)
        _wait_http(f"http://127.0.0.1:{agent.port}/healthz", a, logs / "agent.log")
        _local_provider(backend_url, backend, agent, wallet)
        typer.echo("waiting for the host's first signed heartbeat ...")
        _wait_online(backend_url, backend, agent.stats_interval * 2 + 10)
    except (RuntimeError, httpx.HTTPError) as exc:
        for p in procs:
            p.terminate()
        if node is not None:
            node.stop()
        pidfile.unlink(missing_ok=True)
        raise typer.Exit(_say_fail(str(exc))) from exc
    typer.echo(f"""
Kumulus is up.
  backend API   {backend_url}  (OpenAPI: {backend_url}/docs)   log: {logs / "backend.log"}
  agent API     http://127.0.0.1:{agent.port}  (kumulus agent token)  log: {logs / "agent.log"}
  provider      {LOCAL_PROVIDER} (password in {backend.data_dir / "local-provider-password"})

First VM, as a developer:
  kumulus signup --backend {backend_url} --email you@example.com && \\
  kumulus login --backend {backend_url} --email you@example.com && \\
  kumulus ssh-key add ~/.ssh/id_ed25519.pub && kumulus vm create --username dev

Ctrl-C stops both.""")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.is_set():
            if any(p.poll() is not None for p in procs):
                typer.secho(
                    "a component stopped; see the logs above", err=True, fg=typer.colors.RED
                )
                break
            stop.wait(1)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        if node is not None:
            node.stop()
        pidfile.unlink(missing_ok=True)


def _say_fail(message: str) -> int:
    typer.secho(f"error: kumulus up failed: {message}", err=True, fg=typer.colors.RED)
    return 1
