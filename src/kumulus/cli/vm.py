"""`kumulus vm create | ls | show | start | stop | rm | logs | ssh`: the developer's VMs."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from kumulus import known_hosts
from kumulus.backend.schemas import VMCreateIn, VMLogsOut, VMOut, VMQuoteIn
from kumulus.cli import interrupts, session, ssh
from kumulus.cli.exits import Exit, fail
from kumulus.cli.output import JsonFlag, as_data, emit_json, fields, invalid, printable, table
from kumulus.cli.progress import Stages
from kumulus.client import ApiError, BackendClient
from kumulus.core.hostkeys import host_key_alias
from kumulus.core.sizes import SizeError, disk_usage_text, parse_size
from kumulus.core.usernames import UsernameError, validate_username

app = typer.Typer(help="Your VMs.", no_args_is_help=True)
# Seconds between two looks at a VM (or its logs) while waiting.
POLL_EVERY = 1.0

_STAGES = {
    "pending": "waiting for its host to create it",
    "starting": "starting, waiting for SSH",
    "running": "running",
    "stopping": "stopping",
    "stopped": "stopped",
    "deleting": "deleting",
    "unreachable": "its host is not answering",
}


def _await(
    api: BackendClient,
    vm: VMOut,
    done: Callable[[VMOut], bool],
    timeout: float,
    stages: Stages | None = None,
) -> VMOut | None:
    """Poll the VM until `done(vm)` or `timeout` seconds pass, showing each state it goes
    through on `stages`; the last answer (None once the VM is gone). Network blips and
    retryable refusals are waited out within the timeout."""
    deadline = time.monotonic() + timeout
    with interrupts.watch():
        while True:
            if stages is not None:
                stages.show(_STAGES.get(vm.actual_state, vm.actual_state))
            if done(vm) or time.monotonic() >= deadline:
                return vm
            interrupts.sleep(POLL_EVERY)
            try:
                vm = api.vm(vm.id)
            except ApiError as exc:
                if exc.status == 404:
                    return None
                if exc.retry or exc.status is None:
                    continue
                raise


def _create_once_more(api: BackendClient, want: VMCreateIn, key: str) -> VMOut:
    """The create, retried once after a network error with the same Idempotency-Key: the
    backend answers the VM the first try made, if it made one, rather than a second."""
    try:
        return api.create_vm(want, key)
    except ApiError as exc:
        if exc.status is not None:
            raise
        return api.create_vm(want, key)


@app.command("create")
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
    json_out: JsonFlag = False,
) -> None:
    """Create a VM on a provider host that fits; shows its price and its stages (placed,
    starting, waiting for SSH, running), then the ssh command.

    The price shown is the backend's quote: what the VM pays on the host the scheduler
    would choose now. The create carries maxPricePerHour (the quote plus the tolerance,
    or --max-price), so it is placed at about that price or refused with the new one. It
    carries an Idempotency-Key too: after a network error it is sent once more with the
    same key, which cannot make a second VM."""
    try:
        validate_username(username)  # before asking for a price: what the create would say
    except UsernameError as exc:
        fail(f"username: {exc}", Exit.USAGE, as_json=json_out)
    out = sys.stderr if json_out else sys.stdout
    with session.api(json_out) as api:
        if key_id is None:
            keys = api.ssh_keys()
            if not keys:
                fail("no SSH key saved: kumulus ssh-key add ~/.ssh/id_ed25519.pub",
                     as_json=json_out)  # fmt: skip
            key_id = keys[0].id
        try:
            shape = VMQuoteIn.model_validate(
                {
                    "cpu": cpu,
                    "memory": memory,
                    "disk": disk,
                    "region": region,
                    "maxPricePerHour": max_price,
                }
            )
        except ValidationError as exc:
            fail(invalid(exc), Exit.USAGE, as_json=json_out)
        quoted = api.quote(shape)
        most = max_price or quoted.max_price_per_hour
        typer.echo(
            f"price: {printable(quoted.price_per_hour, 40)} {printable(quoted.symbol, 12)} "
            f"per hour while running (creating only at most {printable(most, 40)} "
            f"{printable(quoted.symbol, 12)})",
            file=out,
        )
        want = VMCreateIn.model_validate({**shape.model_dump(by_alias=True), "name": name,
                                          "username": username, "sshKeyId": key_id,
                                          "maxPricePerHour": most})  # fmt: skip
        vm: VMOut | None = _create_once_more(api, want, f"cli-{uuid.uuid4()}")
        assert vm is not None
        typer.echo(
            f"VM {printable(vm.id)} placed on host {printable(vm.host_id or '?')}, "
            f"{printable(vm.price_per_hour or '?')} per hour while running",
            file=out,
        )
        if not no_wait:
            with Stages(out) as stages:
                vm = _await(api, vm, lambda v: v.actual_state not in ("pending", "starting"),
                            wait, stages)  # fmt: skip
    if vm is None:
        fail("the VM was deleted meanwhile", Exit.NOT_FOUND, as_json=json_out)
    if vm.actual_state == "failed":
        fail(f"VM {vm.id} failed: {vm.failure_reason or 'no reason given'}", as_json=json_out)
    if json_out:
        emit_json(vm)
        return
    if no_wait:
        typer.echo(f"not waiting: follow it with kumulus vm show {vm.id}")
        return
    if vm.actual_state != "running":
        typer.echo(f"still {vm.actual_state}; the platform keeps asking its host: "
                   f"kumulus vm show {vm.id}")  # fmt: skip
        return
    line, problem = ssh.line(vm)
    if line:
        typer.echo(line)
    elif problem:
        typer.secho(f"no ssh address: {problem}", err=True, fg=typer.colors.YELLOW)


@app.command("ls")
def vm_ls(json_out: JsonFlag = False) -> None:
    """Your VMs: ID, wanted and actual state, size, price, ssh line."""
    with session.api(json_out) as api:
        vms = api.vms()
    if json_out:
        emit_json(vms)
        return
    rows = as_data(vms)
    for row, vm in zip(rows, vms, strict=True):  # never the server's sshCommand: see ssh.argv
        row["sshCommand"] = ssh.line(vm)[0]
    table(rows, [("id", "ID"), ("name", "NAME"), ("intendedState", "WANTED"),
                 ("actualState", "STATE"), ("cpu", "CPU"), ("memory", "MEM"), ("disk", "DISK"),
                 ("pricePerHour", "PRICE/H"), ("sshCommand", "SSH")])  # fmt: skip


@app.command("show")
def vm_show(vm_id: str, json_out: JsonFlag = False) -> None:
    """One VM's fields, its disk usage against its size (which `df` inside the VM cannot
    show: it sees the host's filesystem) and its SSH host key fingerprint."""
    with session.api(json_out) as api:
        vm = api.vm(vm_id)
    if json_out:
        emit_json(vm)
        return
    line, problem = ssh.line(vm)
    used = vm.disk_used_bytes
    try:
        disk = disk_usage_text(used if used is not None and used >= 0 else None,
                               parse_size(vm.disk))  # fmt: skip
    except SizeError:
        disk = "unknown"
    data = as_data(vm)
    pairs: list[tuple[str, object]] = [
        ("id", vm.id),
        ("name", vm.name),
        ("state", f"{vm.actual_state} (wanted: {vm.intended_state})"),
        ("size", f"{vm.cpu:g} vCPU, {vm.memory} memory, {vm.disk} disk"),
        ("disk", disk),
        ("region", vm.region or "any"),
        ("host", vm.host_id or "-"),
        ("price/h", vm.price_per_hour or "-"),
    ]
    if data.get("costSoFar") is not None:  # once the API has it (issue 15, console part)
        pairs.append(("cost", data["costSoFar"]))
    pairs += [
        ("ssh", line or problem or "-"),
        ("host key", vm.host_key_fingerprint or "not known (made before host keys)"),
        ("created", f"{vm.created_at:%Y-%m-%d %H:%M:%S} UTC"),
    ]
    if vm.failure_reason:
        pairs.append(("failure", vm.failure_reason))
    if vm.funds_warning:
        pairs.append(("funds", vm.funds_warning))
    fields(pairs)


_SETTLED: dict[str, Callable[[VMOut], bool]] = {
    "start": lambda v: v.actual_state in ("running", "failed"),
    "stop": lambda v: v.actual_state in ("stopped", "insufficient_funds", "failed"),
}
NoWait = Annotated[bool, typer.Option("--no-wait", help="do not wait for the host to confirm")]


def _lifecycle(action: str, vm_id: str, no_wait: bool, json_out: bool) -> None:
    with session.api(json_out) as api:
        vm: VMOut | None = api.start_vm(vm_id) if action == "start" else api.stop_vm(vm_id)
        if not no_wait and vm is not None:
            vm = _await(api, vm, _SETTLED[action], 300)
    if vm is None:
        fail(f"VM {vm_id} was deleted meanwhile", Exit.NOT_FOUND, as_json=json_out)
    if json_out:
        emit_json(vm)
        return
    typer.echo(f"VM {printable(vm.id)}: {printable(vm.actual_state)}")
    if vm.failure_reason and vm.actual_state != "running":
        typer.echo(f"  {printable(vm.failure_reason)}")


@app.command("start")
def vm_start(vm_id: str, no_wait: NoWait = False, json_out: JsonFlag = False) -> None:
    """Start a stopped VM (a full hold at its running price must be covered)."""
    _lifecycle("start", vm_id, no_wait, json_out)


@app.command("stop")
def vm_stop(vm_id: str, no_wait: NoWait = False, json_out: JsonFlag = False) -> None:
    """Stop a VM: it pays for its disk only until started again."""
    _lifecycle("stop", vm_id, no_wait, json_out)


@app.command("rm")
def vm_rm(vm_id: str, no_wait: NoWait = False, json_out: JsonFlag = False) -> None:
    """Delete a VM: nothing is billed from now on."""
    with session.api(json_out) as api:
        pending = api.delete_vm(vm_id)
        if pending is not None and not no_wait:  # 202: its host has not confirmed yet
            pending = _await(api, pending, lambda v: False, 120)
    if json_out:
        emit_json({"id": vm_id, "deleted": pending is None})
        return
    if pending is not None:
        typer.echo(f"VM {vm_id} deleting: nothing is billed; it goes once its host confirms")
    else:
        typer.echo(f"VM {vm_id} deleted")


def _console_text(text: str) -> str:
    # Lines and tabs are kept; every other control character (terminal escapes) is '?'.
    return "".join(ch if ch.isprintable() or ch in "\n\t" else "?" for ch in text)


@app.command("logs")
def vm_logs(
    vm_id: str,
    tail: Annotated[int, typer.Option(min=1, max=10000, help="last lines to show")] = 200,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing new lines (Ctrl-C ends)")
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """The VM's console output, through its provider's agent. --follow asks again every
    second for the lines after the last one seen (the API's `until` marker, sent back
    as `since`); with --json, one JSON object per answer."""

    def show(chunk: VMLogsOut) -> None:
        if json_out:
            emit_json(chunk)
        else:
            typer.echo(_console_text(chunk.logs), nl=False)

    with session.api(json_out) as api:
        if not follow:
            show(api.vm_logs(vm_id, tail, None))
            return
        since: str | None = None
        with interrupts.watch():
            try:
                while True:
                    try:
                        chunk = api.vm_logs(vm_id, tail, since)
                    except ApiError as exc:
                        if not (exc.retry or exc.status is None):
                            raise
                        interrupts.sleep(POLL_EVERY)  # a blip while following: ask again
                        continue
                    show(chunk)
                    since = chunk.until or since
                    interrupts.sleep(POLL_EVERY)
            except KeyboardInterrupt:
                return  # Ctrl-C is how a follow ends


@app.command("ssh")
def vm_ssh(
    vm_id: str,
    command: Annotated[
        list[str] | None, typer.Argument(help="a command to run there (after --)")
    ] = None,
    identity: Annotated[Path | None, typer.Option("-i", help="private key file")] = None,
) -> None:
    """Open an SSH session to the VM (runs your ssh client), or run `-- CMD ...` there and
    exit with its status, checking the VM's host key against the one its host reported,
    kept in ~/.config/kumulus/known_hosts."""
    with session.api() as api:
        try:
            vm = api.vm(vm_id)
        except ApiError as exc:
            if exc.code != "bad_answer":
                raise
            fail(f"refusing to run ssh for VM {vm_id}: {exc.detail}")
    if vm.ssh_problem:
        fail(f"VM {vm_id}: {vm.ssh_problem}")
    if not vm.ssh_host or vm.ssh_port is None:
        fail(f"VM {vm_id} has no SSH address yet ({vm.actual_state})", Exit.CONFLICT)
    known = session.known_hosts_path()
    try:
        argv = ssh.argv(vm, known)
        if vm.host_key is not None:
            replaced = known_hosts.remember(known, host_key_alias(vm.id), vm.host_key)
            if replaced is not None:
                typer.secho(
                    f"warning: the backend reports a different host key for VM {vm_id} than "
                    f"{known} had; using the backend's",
                    err=True,
                    fg=typer.colors.YELLOW,
                )
    except ValueError as exc:
        fail(f"refusing to run ssh for VM {vm_id}: {exc}")
    except OSError as exc:
        fail(f"cannot write {known}: {exc}")
    if vm.host_key is None:
        typer.secho(
            f"warning: the backend has no host key for VM {vm_id} (made before hosts reported "
            "them): ssh trusts the key it is shown on the first connection and refuses any "
            "other after that",
            err=True,
            fg=typer.colors.YELLOW,
        )
    if identity is not None:
        argv[1:1] = ["-i", str(identity.expanduser())]
    # The remote command goes after the destination, as ssh's own arguments: ssh passes it
    # to the VM's shell, and exits with its status (exec: ours is ssh's).
    argv += list(command or [])
    # argv built here from validated parts; no shell, nothing the server wrote runs as is.
    os.execvp(argv[0], argv)  # noqa: S606
