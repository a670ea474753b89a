"""`kumulus provider host | payout | earnings`: a provider's hosts, payouts and earnings
over the API (the agent on a host is `kumulus agent`)."""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError

from kumulus.backend.schemas import HostPublic, HostUpdate, Prices
from kumulus.cli import session
from kumulus.cli.exits import Exit, fail
from kumulus.cli.output import JsonFlag, as_data, emit_json, fields, invalid, printable, table

app = typer.Typer(help="Your hosts, payouts and earnings (as a provider).", no_args_is_help=True)
host_app = typer.Typer(help="Your hosts.", no_args_is_help=True)
payout_app = typer.Typer(help="Payouts of your earnings to your wallet.", no_args_is_help=True)
app.add_typer(host_app, name="host")
app.add_typer(payout_app, name="payout")


def _gib(value: int) -> str:
    return f"{value / (1 << 30):g}G"


def _host_row(host: HostPublic) -> dict[str, object]:
    return {
        "id": host.id,
        "status": host.status + (" (draining)" if host.draining else ""),
        "region": host.region or "-",
        "address": host.public_ip,
        "cpu": f"{host.reserved_cpu:g}/{host.cpu:g}",
        "memory": f"{_gib(host.reserved_memory)}/{_gib(host.memory)}",
        "disk": f"{_gib(host.reserved_disk)}/{_gib(host.disk)}",
        "key": host.host_key_state,
        "reputation": host.reputation,
    }


@host_app.command("ls")
def host_ls(json_out: JsonFlag = False) -> None:
    """Your hosts: status (and draining), reserved of capacity, key state, reputation."""
    with session.api(json_out) as api:
        hosts = api.hosts()
    if json_out:
        emit_json(hosts)
        return
    table([_host_row(h) for h in hosts], [("id", "ID"), ("status", "STATUS"),
          ("region", "REGION"), ("address", "ADDRESS"), ("cpu", "CPU"), ("memory", "MEM"),
          ("disk", "DISK"), ("key", "KEY"), ("reputation", "REPUTATION")])  # fmt: skip


def _show(host: HostPublic) -> None:
    row = _host_row(host)
    fields([
        ("id", host.id), ("status", row["status"]), ("region", row["region"]),
        ("address", host.public_ip), ("agent", f"{host.agent_version} at {host.api_url}"),
        ("cpu", row["cpu"]), ("memory", row["memory"]), ("disk", row["disk"]),
        ("prices", f"{host.prices.cpu}/vCPU-h, {host.prices.memory_gib}/GiB-h memory, "
                   f"{host.prices.disk_gib}/GiB-h disk"),
        ("key", f"{host.host_key_state}" + (f" until {host.delegated_until:%Y-%m-%d}"
                                            if host.delegated_until else "")),
        ("isolation", "full" if host.isolated else host.isolation_problem or "not full"),
        ("reputation", host.reputation),
        ("uptime", f"24h {host.uptime_24h}, 7d {host.uptime_7d}, 30d {host.uptime_30d}"),
        ("heartbeat", host.last_heartbeat_at),
    ] + ([("problem", host.capacity_problem)] if host.capacity_problem else []))  # fmt: skip


@host_app.command("show")
def host_show(host_id: str, json_out: JsonFlag = False) -> None:
    """One host's fields."""
    with session.api(json_out) as api:
        host = api.host(host_id)
    if json_out:
        emit_json(host)
        return
    _show(host)


@host_app.command("price")
def host_price(
    host_id: str,
    cpu: Annotated[str, typer.Option(help="tokens per vCPU-hour, e.g. 0.01")],
    memory_gib: Annotated[str, typer.Option(help="tokens per GiB-of-memory-hour")],
    disk_gib: Annotated[str, typer.Option(help="tokens per GiB-of-disk-hour")],
    json_out: JsonFlag = False,
) -> None:
    """Set a host's prices; VMs already placed keep the prices they were placed at."""
    try:
        change = HostUpdate(prices=Prices(cpu=cpu, memory_gib=memory_gib, disk_gib=disk_gib))
    except ValidationError as exc:
        fail(f"prices: {invalid(exc)}", Exit.USAGE, as_json=json_out)
    with session.api(json_out) as api:
        host = api.update_host(host_id, change)
    if json_out:
        emit_json(host)
        return
    p = host.prices
    typer.echo(f"host {printable(host.id)}: {p.cpu}/vCPU-h, {p.memory_gib}/GiB-h memory, "
               f"{p.disk_gib}/GiB-h disk")  # fmt: skip


def _drain(host_id: str, draining: bool, json_out: bool) -> None:
    with session.api(json_out) as api:
        host = api.update_host(host_id, HostUpdate(draining=draining))
    if json_out:
        emit_json(host)
        return
    if draining:
        typer.echo(f"host {printable(host.id)} is draining: no new VMs; its VMs keep running")
    else:
        typer.echo(f"host {printable(host.id)} takes new VMs again")


@host_app.command("drain")
def host_drain(host_id: str, json_out: JsonFlag = False) -> None:
    """Stop new placements on a host (before maintenance); its VMs keep running."""
    _drain(host_id, True, json_out)


@host_app.command("undrain")
def host_undrain(host_id: str, json_out: JsonFlag = False) -> None:
    """Let a drained host take new VMs again."""
    _drain(host_id, False, json_out)


@payout_app.command("ls")
def payout_ls(json_out: JsonFlag = False) -> None:
    """Your payouts, newest first, with their state on chain."""
    with session.api(json_out) as api:
        payouts = api.payouts()
    if json_out:
        emit_json(payouts)
        return
    table(as_data(payouts), [("id", "ID"), ("amount", "AMOUNT"), ("status", "STATUS"),
          ("blockNumber", "BLOCK"), ("createdAt", "REQUESTED"), ("error", "ERROR")])  # fmt: skip


@payout_app.command("request")
def payout_request(
    amount: Annotated[
        str | None, typer.Option(help="tokens to pay out (default: everything withdrawable)")
    ] = None,
    json_out: JsonFlag = False,
) -> None:
    """Pay earnings to your linked wallet; the payouts job sends it within its interval."""
    with session.api(json_out) as api:
        payout = api.request_payout(amount)
    if json_out:
        emit_json(payout)
        return
    typer.echo(f"payout {payout.id} of {payout.amount} to {payout.address}: {payout.status}")


def earnings(json_out: JsonFlag = False) -> None:
    """What you earned: withdrawable (`balance`), not yet withdrawable (`promo`: earned
    from developers' promotional credit, paid out by the platform within its daily
    budget), paid from promotion so far, and what your hosts earn per hour now."""
    with session.api(json_out) as api:
        view = api.billing()
    if json_out:
        emit_json(view)
        return
    fields([
        ("withdrawable", view.balance),
        ("not yet withdrawable", view.promo),
        ("promotion paid so far", view.promo_paid),
        ("promotion paid per day at most", view.promo_daily_cap),
        ("earning per hour", view.per_hour),
        ("on-chain settlement", view.settlement),
    ])  # fmt: skip
    if view.warning:
        typer.secho(printable(view.warning), fg=typer.colors.YELLOW)


app.command("earnings")(earnings)
