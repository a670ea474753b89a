"""`kumulus login | ssh-key | vm`: the developer's command line over the backend API."""

from __future__ import annotations

import getpass
import json
import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from kumulus import known_hosts
from kumulus.client import ApiError, BackendClient
from kumulus.core.hostkeys import HostKeyError, host_key_alias, parse_host_key
from kumulus.core.hostnames import ssh_argv, ssh_command
from kumulus.core.signing import write_secret_file
from kumulus.core.sizes import SizeError, disk_usage_text, parse_size
from kumulus.core.usernames import UsernameError, validate_username

key_app = typer.Typer(help="Your SSH public keys.", no_args_is_help=True)
vm_app = typer.Typer(help="Your VMs.", no_args_is_help=True)
# Seconds between two looks at a VM while waiting for its host.
POLL_EVERY = 1.0


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "kumulus" / "cli.json"


def known_hosts_path() -> Path:
    return config_path().with_name("known_hosts")


def _printable(value: object, limit: int = 300) -> str:
    # Text from the server goes to a terminal: no escape sequences or control characters.
    return "".join(ch if ch.isprintable() else "?" for ch in str(value))[:limit]


def _fail(message: str, code: int = 1) -> typer.Exit:
    # Messages carry server text, such as a provider's agent's error detail passed on by
    # the backend ("the host refused: ..."): printable characters only.
    typer.secho(f"error: {_printable(message, 2000)}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def _client() -> BackendClient:
    try:
        cfg = json.loads(config_path().read_text())
    except (FileNotFoundError, ValueError) as exc:
        raise _fail("not logged in: run `kumulus login --backend URL --email ...`") from exc
    return BackendClient(cfg["backend"], cfg["token"])


def _call(method: str, path: str, body: Any = None, **kw: Any) -> Any:
    client = _client()
    try:
        return client.call(method, path, body, **kw)
    except ApiError as exc:
        raise _fail(exc.detail) from exc
    finally:
        client.close()


def _list(path: str) -> list[Any]:
    """All items of a paged list of the API."""
    client = _client()
    try:
        return client.list_all(path)
    except ApiError as exc:
        raise _fail(exc.detail) from exc
    finally:
        client.close()


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
    cells = [
        [_printable(row.get(key) if row.get(key) is not None else "-") for key, _ in columns]
        for row in rows
    ]
    widths = [
        max([len(title)] + [len(r[i]) for r in cells]) for i, (_, title) in enumerate(columns)
    ]
    typer.echo("  ".join(title.ljust(w) for (_, title), w in zip(columns, widths, strict=True)))
    for r in cells:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def _password(stdin: bool) -> str:
    if stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise _fail("no terminal to ask for the password: use --password-stdin", 2)
    return getpass.getpass("Password: ")


def signup(
    backend: Annotated[str, typer.Option(help="backend URL")],
    email: Annotated[str, typer.Option()],
    role: Annotated[str, typer.Option(help="developer or provider")] = "developer",
    password_stdin: Annotated[bool, typer.Option(help="read the password from stdin")] = False,
) -> None:
    """Create an account."""
    client = BackendClient(backend)
    try:
        client.call(
            "POST",
            "/v1/auth/signup",
            {"email": email, "password": _password(password_stdin), "role": role},
        )
    except ApiError as exc:
        raise _fail(exc.detail) from exc
    typer.echo(f"account {email} created; now: kumulus login --backend {backend} --email {email}")


def login(
    backend: Annotated[str, typer.Option(help="backend URL")],
    email: Annotated[str, typer.Option()],
    password_stdin: Annotated[bool, typer.Option(help="read the password from stdin")] = False,
) -> None:
    """Log in; the API token is kept in ~/.config/kumulus/cli.json (0600)."""
    client = BackendClient(backend)
    try:
        result = client.call(
            "POST",
            "/v1/auth/login",
            {"email": email, "password": _password(password_stdin), "tokenName": "cli"},
        )
    except ApiError as exc:
        raise _fail(exc.detail) from exc
    write_secret_file(
        config_path(), json.dumps({"backend": backend.rstrip("/"), "token": result["token"]})
    )
    typer.echo(
        f"logged in as {email} ({result['account']['role']}); "
        f"the token expires {_printable(result.get('expiresAt', '?'))}"
    )


@key_app.command("add")
def key_add(
    path: Annotated[Path, typer.Argument(help="public key file")] = Path("~/.ssh/id_ed25519.pub"),
    name: Annotated[str | None, typer.Option(help="a name for it")] = None,
) -> None:
    """Save an SSH public key."""
    file = path.expanduser()
    try:
        text = file.read_text()
    except OSError as exc:
        raise _fail(f"cannot read {file}: {exc.strerror}") from exc
    key = _call("POST", "/v1/ssh-keys", {"name": name or file.stem, "publicKey": text})
    typer.echo(f"added key {key['id']} {key['fingerprint']}")


@key_app.command("ls")
def key_ls() -> None:
    _table(
        _list("/v1/ssh-keys"),
        [("id", "ID"), ("name", "NAME"), ("fingerprint", "FINGERPRINT")],
    )


@key_app.command("rm")
def key_rm(key_id: int) -> None:
    _call("DELETE", f"/v1/ssh-keys/{key_id}")
    typer.echo(f"removed key {key_id}")


@vm_app.command("create")
def vm_create(
    username: Annotated[str, typer.Option(help="your user inside the VM")],
    cpu: Annotated[float, typer.Option(help="vCPUs")] = 1.0,
    memory: Annotated[str, typer.Option(help="e.g. 1g")] = "1g",
    disk: Annotated[str, typer.Option(help="e.g. 10g")] = "10g",
    key_id: Annotated[int | None, typer.Option(help="a saved key (kumulus ssh-key ls)")] = None,
    region: Annotated[str | None, typer.Option()] = None,
    name: Annotated[str, typer.Option()] = "vm",
    max_price: Annotated[
        str | None,
        typer.Option(
            help="most it may cost per hour running, in tokens, e.g. 0.05 (default: the "
            "quoted price plus the backend's tolerance, 10% unless configured)"
        ),
    ] = None,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="return once it is placed; do not wait for SSH")
    ] = False,
    wait: Annotated[float, typer.Option(help="most seconds to wait for it to run")] = 300,
) -> None:
    """Create a VM on a provider host that fits; prints its price, then the ssh command.

    The price shown is the backend's quote: what the VM pays on the host the scheduler
    would choose now. The create carries maxPricePerHour (the quote plus the tolerance,
    or --max-price), so it is placed at about that price or refused with the new one."""
    try:
        validate_username(username)  # before asking for a price: what the create would say
    except UsernameError as exc:
        raise _fail(f"username: {exc}") from exc
    if key_id is None:
        keys = _list("/v1/ssh-keys")
        if not keys:
            raise _fail("no SSH key saved: kumulus ssh-key add ~/.ssh/id_ed25519.pub")
        key_id = keys[0]["id"]
    shape: dict[str, Any] = {"cpu": cpu, "memory": memory, "disk": disk, "region": region}
    quoted = _call("POST", "/v1/vms/quote", {**shape, "maxPricePerHour": max_price})
    most = max_price or quoted["maxPricePerHour"]
    symbol = _printable(quoted["symbol"], 12)
    typer.echo(
        f"price: {_printable(quoted['pricePerHour'], 40)} {symbol} per hour while running "
        f"(creating only at most {_printable(most, 40)} {symbol})"
    )
    body = {
        "name": name,
        "username": username,
        "sshKeyId": key_id,
        **shape,
        "maxPricePerHour": most,
    }
    # One key for this create: a retry after a network error gets the same VM, not two.
    headers = {"Idempotency-Key": f"cli-{secrets.token_hex(16)}"}
    client = _client()
    try:
        try:
            vm = client.call("POST", "/v1/vms", body, headers=headers)
        except ApiError as exc:
            if exc.status is not None:
                raise
            vm = client.call("POST", "/v1/vms", body, headers=headers)  # same key: same VM
    except ApiError as exc:
        raise _fail(exc.detail) from exc
    finally:
        client.close()
    typer.echo(
        f"VM {_printable(vm['id'])} placed on host {_printable(vm['hostId'])}, "
        f"{_printable(vm.get('pricePerHour') or '?')} per hour while running"
    )
    if no_wait:
        typer.echo(f"not waiting: follow it with kumulus vm ls (state {vm['actualState']})")
        return
    vm = _await(vm, lambda v: v["actualState"] not in ("pending", "starting"), wait)
    if vm["actualState"] == "failed":
        raise _fail(f"VM {vm['id']} failed: {vm.get('failureReason') or 'no reason given'}")
    if vm["actualState"] != "running":
        typer.echo("still not running; the platform keeps asking its host: kumulus vm ls")
        return
    line, problem = _ssh_line(vm)
    if line:
        typer.echo(line)
    elif problem:
        typer.secho(f"no ssh address: {problem}", err=True, fg=typer.colors.YELLOW)


_STAGES = {
    "pending": "waiting for its host to create it",
    "starting": "starting, waiting for SSH",
    "running": "running",
    "stopping": "stopping",
    "stopped": "stopped",
    "deleting": "deleting",
    "unreachable": "its host is not answering",
}


def _await(vm: dict[str, Any], done: Callable[[dict[str, Any]], bool], timeout: float) -> Any:
    """Poll the VM until `done(vm)` or `timeout` seconds pass, printing each state it goes
    through; the last answer (None once the VM is gone)."""
    deadline = time.monotonic() + timeout
    shown = None
    client = _client()
    try:
        while True:
            state = vm["actualState"]
            if state != shown:
                typer.echo(f"  {_STAGES.get(state, _printable(state))}")
                shown = state
            if done(vm) or time.monotonic() >= deadline:
                return vm
            time.sleep(POLL_EVERY)
            try:
                vm = client.call("GET", f"/v1/vms/{vm['id']}")
            except ApiError as exc:
                if exc.status == 404:
                    return None
                if exc.retry or exc.status is None:
                    continue  # a blip: the deadline still bounds the wait
                raise _fail(exc.detail) from exc
    finally:
        client.close()


@vm_app.command("ls")
def vm_ls() -> None:
    vms = _list("/v1/vms")
    for vm in vms:  # never the server's sshCommand: see _ssh_argv
        vm["sshCommand"] = _ssh_line(vm)[0]
    _table(
        vms,
        [
            ("id", "ID"),
            ("name", "NAME"),
            ("intendedState", "WANTED"),
            ("actualState", "STATE"),
            ("cpu", "CPU"),
            ("memory", "MEM"),
            ("disk", "DISK"),
            ("pricePerHour", "PRICE/H"),
            ("sshCommand", "SSH"),
        ],
    )


@vm_app.command("show")
def vm_show(vm_id: str) -> None:
    """One VM's fields, its disk usage against its size (which `df` inside the VM cannot
    show: it sees the host's filesystem) and its SSH host key fingerprint."""
    vm = _call("GET", f"/v1/vms/{vm_id}")
    line, problem = _ssh_line(vm)
    used = vm.get("diskUsedBytes")
    try:
        disk = disk_usage_text(
            used if isinstance(used, int) and used >= 0 else None, parse_size(str(vm.get("disk")))
        )
    except SizeError:
        disk = "unknown"
    fields = [
        ("id", vm.get("id")),
        ("name", vm.get("name")),
        ("state", f"{vm.get('actualState')} (wanted: {vm.get('intendedState')})"),
        ("size", f"{vm.get('cpu')} vCPU, {vm.get('memory')} memory, {vm.get('disk')} disk"),
        ("disk", disk),
        ("region", vm.get("region") or "any"),
        ("host", vm.get("hostId") or "-"),
        ("price/h", vm.get("pricePerHour") or "-"),
        ("ssh", line or problem or "-"),
        ("host key", vm.get("hostKeyFingerprint") or "not known (made before host keys)"),
        ("created", vm.get("createdAt")),
    ]
    if vm.get("failureReason"):
        fields.append(("failure", vm["failureReason"]))
    if vm.get("fundsWarning"):
        fields.append(("funds", vm["fundsWarning"]))
    for name, value in fields:
        typer.echo(f"{name + ':':<10} {_printable(value)}")


def _ssh_parts(vm: dict[str, Any]) -> tuple[str, object, str]:
    host, port, username = vm.get("sshHost"), vm.get("sshPort"), vm.get("username")
    if not isinstance(host, str) or not isinstance(username, str):
        raise ValueError("the VM answer has no valid sshHost or username")
    return host, port, username


def _ssh_argv(vm: dict[str, Any], known: Path | None = None) -> list[str]:
    """The ssh argv for a VM answer, built from its sshHost, sshPort and username, each
    validated here again (ValueError otherwise). The server's sshCommand is never used: a
    host's address comes from its provider, and a string split into argv could carry
    options such as -oProxyCommand that run commands on this machine.

    With `known` (a known_hosts file), ssh checks the VM's host key against `vm-<id>` in
    that file: the VM's hostKey, filed there first (StrictHostKeyChecking=yes), or, when
    the answer has none, whatever key ssh is shown first (accept-new; see vm_ssh)."""
    argv = ssh_argv(*_ssh_parts(vm))
    if known is None:
        return argv
    alias = host_key_alias(vm.get("id"))
    key = vm.get("hostKey")
    if key is not None:
        try:
            key = parse_host_key(key).line
        except HostKeyError as exc:
            raise ValueError(f"the backend's host key for the VM is not valid: {exc}") from exc
    options = known_hosts.ssh_options(known, alias, verified=key is not None)
    destination = argv.index("--")
    return argv[:destination] + options + argv[destination:]


def _ssh_line(vm: dict[str, Any]) -> tuple[str | None, str | None]:
    """(ssh line to show, None) or (None, why not) for a VM answer, built locally from
    validated parts like _ssh_argv; (None, None) while the VM has no address."""
    if vm.get("sshProblem"):
        return None, _printable(vm["sshProblem"])
    if not vm.get("sshHost") or vm.get("sshPort") is None:
        return None, None
    try:
        return ssh_command(*_ssh_parts(vm)), None
    except ValueError as exc:
        return None, f"refused an invalid ssh address from the backend: {exc}"


_SETTLED = {
    "start": lambda v: v["actualState"] in ("running", "failed"),
    "stop": lambda v: v["actualState"] in ("stopped", "insufficient_funds", "failed"),
}
NoWait = Annotated[bool, typer.Option("--no-wait", help="do not wait for the host to confirm")]


def _vm_action(action: str, vm_id: str, no_wait: bool) -> None:
    vm = _call("POST", f"/v1/vms/{vm_id}/{action}")
    if not no_wait:
        vm = _await(vm, _SETTLED[action], 300)
    if vm is None:
        raise _fail(f"VM {vm_id} was deleted meanwhile", code=1)
    typer.echo(f"VM {_printable(vm['id'])}: {_printable(vm['actualState'])}")
    if vm.get("failureReason") and vm["actualState"] != "running":
        typer.echo(f"  {_printable(vm['failureReason'])}")


@vm_app.command("start")
def vm_start(vm_id: str, no_wait: NoWait = False) -> None:
    _vm_action("start", vm_id, no_wait)


@vm_app.command("stop")
def vm_stop(vm_id: str, no_wait: NoWait = False) -> None:
    _vm_action("stop", vm_id, no_wait)


@vm_app.command("rm")
def vm_rm(vm_id: str, no_wait: NoWait = False) -> None:
    pending = _call("DELETE", f"/v1/vms/{vm_id}")
    if pending and not no_wait:  # 202: its host has not confirmed yet
        pending = _await(pending, lambda v: False, 120)
    if pending:
        typer.echo(f"VM {vm_id} deleting: nothing is billed; it goes once its host confirms")
    else:
        typer.echo(f"VM {vm_id} deleted")


@vm_app.command("logs")
def vm_logs(vm_id: str, tail: int = 200) -> None:
    """The VM's console output. It comes through the provider's agent: lines and tabs are
    kept, every other control character (terminal escapes) is shown as '?'."""
    text = str(_call("GET", f"/v1/vms/{vm_id}/logs?tail={tail}")["logs"])
    typer.echo("".join(ch if ch.isprintable() or ch in "\n\t" else "?" for ch in text), nl=False)


@vm_app.command("ssh")
def vm_ssh(
    vm_id: str,
    identity: Annotated[Path | None, typer.Option("-i", help="private key file")] = None,
) -> None:
    """Open an SSH session to the VM (runs your ssh client), checking its host key
    against the one its host reported, kept in ~/.config/kumulus/known_hosts."""
    vm = _call("GET", f"/v1/vms/{vm_id}")
    if not isinstance(vm, dict):
        raise _fail("the backend answered something that is not a VM")
    if vm.get("sshProblem"):
        raise _fail(f"VM {vm_id}: {_printable(vm['sshProblem'])}")
    if not vm.get("sshHost") or vm.get("sshPort") is None:
        state = _printable(vm.get("actualState", "?"))
        raise _fail(f"VM {vm_id} has no SSH address yet ({state})")
    known = known_hosts_path()
    try:
        argv = _ssh_argv(vm, known)
        if vm.get("hostKey") is not None:
            replaced = known_hosts.remember(known, host_key_alias(vm["id"]), vm["hostKey"])
            if replaced is not None:
                typer.secho(
                    f"warning: the backend reports a different host key for VM {vm_id} than "
                    f"{known} had; using the backend's",
                    err=True,
                    fg=typer.colors.YELLOW,
                )
    except ValueError as exc:
        raise _fail(f"refusing to run ssh for VM {vm_id}: {exc}") from exc
    except OSError as exc:
        raise _fail(f"cannot write {known}: {exc}") from exc
    if vm.get("hostKey") is None:
        typer.secho(
            f"warning: the backend has no host key for VM {vm_id} (made before hosts reported "
            "them): ssh trusts the key it is shown on the first connection and refuses any "
            "other after that",
            err=True,
            fg=typer.colors.YELLOW,
        )
    if identity is not None:
        argv[1:1] = ["-i", str(identity.expanduser())]
    # argv built here from validated parts; no shell, nothing the server wrote runs as is.
    os.execvp(argv[0], argv)  # noqa: S606


def wallet_deposit(
    amount: Annotated[str, typer.Option(help="tokens to deposit, e.g. 5")],
    mnemonic_file: Annotated[
        Path, typer.Option(help="your wallet's mnemonic (a file only you can read)")
    ],
) -> None:
    """Transfer tokens from your wallet to the platform's deposit address. The wallet must
    be linked to your account first; the backend credits the transfer once it is final."""
    from kumulus.chain.client import ChainClient, ChainError
    from kumulus.core.money import format_amount, parse_amount
    from kumulus.core.signing import SecretFileError, load_keypair

    info = _call("GET", "/v1/billing/deposit-info")
    try:
        planck = parse_amount(amount, int(info["tokenDecimals"]))
        keypair = load_keypair(mnemonic_file)
    except (ValueError, SecretFileError) as exc:
        raise _fail(str(exc)) from exc
    linked = {w["address"] for w in _list("/v1/wallets")}
    if keypair.ss58_address not in linked:
        raise _fail(
            f"wallet {keypair.ss58_address} is not linked to your account: deposits from it "
            "would not be credited"
        )
    try:
        chain = ChainClient(info["chainUrl"], int(info["ss58Format"]))
        receipt = chain.transfer(keypair, info["address"], planck)
    except ChainError as exc:
        raise _fail(str(exc)) from exc
    shown = format_amount(planck, int(info["tokenDecimals"]), info["tokenSymbol"])
    typer.echo(
        f"sent {shown} to {info['address']} in block {receipt.block_number} "
        f"(fee {format_amount(receipt.fee, int(info['tokenDecimals']), info['tokenSymbol'])}); "
        "it shows in `kumulus balance` once the backend has seen the block"
    )


def balance() -> None:
    """Your balance, what you spend (or earn) per hour, and recent ledger entries."""
    view = _call("GET", "/v1/billing")
    typer.echo(f"balance: {view['balance']}   per hour: {view['perHour']}   "
               f"on-chain settlement: {view['settlement']}")  # fmt: skip
    if view.get("warning"):
        typer.secho(_printable(view["warning"]), fg=typer.colors.YELLOW)
    _table(view["entries"][:20], [("createdAt", "WHEN"), ("kind", "KIND"), ("amount", "AMOUNT"),
                                  ("vmId", "VM"), ("memo", "MEMO")])  # fmt: skip
