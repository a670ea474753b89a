"""Provider console: hosts (live status, capacity, charts from signed health stats), adding a
host (one-time setup command, waits for it to register), a host's key (delegate it with the
wallet through the browser extension or a pasted signature, revoke it), wallet linking
(browser extension or pasted signature), profile and prices. Every action calls the
provider API's functions."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy import func, select

from kumulus.backend import host_keys, hosts, payout_wallet, providers, setup_script, statements
from kumulus.backend.clock import aware, utcnow
from kumulus.backend.deps import Db, Settings
from kumulus.backend.hosts import host_public, host_status, prices_out, starting_prices
from kumulus.backend.models import VM, Account, Heartbeat, Host, HostToken
from kumulus.backend.rate_limits import RateLimits, get_rate_limits
from kumulus.backend.schemas import DelegationIn, ProviderProfileIn, ProviderWalletLinkIn
from kumulus.backend.security import hash_token
from kumulus.backend.wallet_links import new_challenge
from kumulus.console.charts import percent_chart
from kumulus.console.web import Form, Provider, field_errors, render
from kumulus.core.delegation import parse_delegation
from kumulus.core.errors import InvalidError, KumulusError, NotFoundError
from kumulus.core.http import status_of
from kumulus.core.signing import SignatureError

router = APIRouter(prefix="/console/provider", include_in_schema=False)
CHART_HOURS = 6


# -- hosts ---------------------------------------------------------------------------------


def _hosts_context(db: Db, settings: Settings, account: Account) -> dict[str, Any]:
    hosts = list(
        db.scalars(select(Host).where(Host.account_id == account.id).order_by(Host.registered_at))
    )
    running: dict[str, int] = {
        str(host_id): int(count)
        for host_id, count in db.execute(
            select(VM.host_id, func.count())
            .where(VM.host_id.in_([h.id for h in hosts]), VM.actual_state == "running")
            .group_by(VM.host_id)
        )
    }
    views = [host_public(h, settings) for h in hosts]
    online = sum(1 for h in views if h.status == "online")
    completed = sum(h.leases_completed for h in hosts)
    failed = sum(h.leases_failed for h in hosts)
    uptimes = [h.uptime_7d for h in hosts if h.uptime_7d is not None]
    summary = (
        f"{online} of {len(hosts)} host(s) online; leases {completed} completed, {failed} failed"
        + (f"; 7-day uptime {100 * sum(uptimes) / len(uptimes):.1f} %" if uptimes else "")
    )
    return {"hosts": views, "running": running, "summary": summary}


@router.get("/hosts")
def hosts_page(request: Request, db: Db, settings: Settings, account: Provider) -> Response:
    profile = providers.profile_of(db, account)
    db.commit()
    earnings = statements.statement(
        db, settings, account, getattr(request.app.state, "chain", None) is not None, 1
    )
    return render(
        request,
        "provider/hosts.html",
        {
            "title": "Hosts",
            "nav": "hosts",
            "wallet": profile.wallet_address,
            "earnings": earnings,
            **_hosts_context(db, settings, account),
        },
    )


@router.get("/hosts/rows")
def host_rows(request: Request, db: Db, settings: Settings, account: Provider) -> Response:
    return render(request, "provider/_host_rows.html", _hosts_context(db, settings, account))


def _host_context(db: Db, settings: Settings, host: Host) -> dict[str, Any]:
    since = utcnow() - timedelta(hours=CHART_HOURS)
    rows = db.execute(
        select(Heartbeat.received_at, Heartbeat.payload)
        .where(Heartbeat.host_id == host.id, Heartbeat.received_at >= since)
        .order_by(Heartbeat.received_at)
    ).all()
    series: dict[str, list[Any]] = {"cpuPercent": [], "memoryPercent": [], "diskPercent": []}
    for received_at, payload in rows:
        stats = payload.get("host") if isinstance(payload, dict) else None
        if not isinstance(stats, dict):
            continue
        for key, points in series.items():
            value = stats.get(key)
            if isinstance(value, int | float):
                points.append((aware(received_at), float(value)))
    view = host_public(host, settings)
    vms_here = db.scalar(
        select(func.count())
        .select_from(VM)
        .where(VM.host_id == host.id, VM.intended_state != "deleted")
    )
    return {
        "host": view,
        "vms_here": int(vms_here or 0),
        "cpu_pct": round(100 * host.reserved_cpu / host.cpu) if host.cpu else 0,
        "mem_pct": round(100 * host.reserved_memory / host.memory) if host.memory else 0,
        "hours": CHART_HOURS,
        "samples": len(rows),
        "charts": [
            percent_chart("CPU", series["cpuPercent"], "#1f5fbf"),
            percent_chart("Memory", series["memoryPercent"], "#136c2e"),
            percent_chart("Disk", series["diskPercent"], "#8a4b00"),
        ],
    }


def _owned_host(db: Db, account: Account, host_id: str) -> Host:
    host = db.get(Host, host_id[:32])
    if host is None or host.account_id != account.id:
        raise NotFoundError(f"no host {host_id[:40]}")
    return host


@router.get("/hosts/new")
def new_host_page(request: Request, db: Db, account: Provider) -> Response:
    profile = providers.profile_of(db, account)
    db.commit()
    return render(
        request,
        "provider/new_host.html",
        {"title": "Add a host", "nav": "add-host", "wallet": profile.wallet_address},
    )


@router.post("/hosts/new")
def create_host_token(
    request: Request, form: Form, db: Db, settings: Settings, account: Provider
) -> Response:
    profile = providers.profile_of(db, account)
    try:
        setup_script.public_url(settings)  # no command to give: no token either
        created = providers.new_host_token(
            db, settings, account, str(request.app.state.keypair.ss58_address)
        )
    except KumulusError as exc:
        return render(
            request,
            "provider/new_host.html",
            {
                "title": "Add a host",
                "nav": "add-host",
                "error": exc.detail,
                "wallet": profile.wallet_address,
            },
            status_code=status_of(exc),
        )
    row = db.scalar(select(HostToken).where(HostToken.token_hash == hash_token(created.token)))
    assert row is not None
    # The token is in this response only; the status fragment below never repeats it.
    return render(
        request,
        "provider/new_host.html",
        {
            "title": "Add a host",
            "nav": "add-host",
            "wallet": profile.wallet_address,
            "command": setup_script.setup_command(settings, created.token),
            "expires_at": created.expires_at,
            "token_id": row.id,
        },
    )


@router.get("/hosts/new/{token_id}/status")
def new_host_status(
    request: Request, token_id: int, db: Db, settings: Settings, account: Provider
) -> Response:
    row = db.get(HostToken, token_id)
    if row is None or row.account_id != account.id:
        raise NotFoundError(f"no host token {token_id}")
    host = db.get(Host, row.host_id) if row.host_id else None
    return render(
        request,
        "provider/_new_host_status.html",
        {
            "new_host": host,
            "new_host_status": host_status(host, settings.heartbeat_ttl) if host else None,
        },
    )


def _host_page(
    request: Request,
    db: Db,
    settings: Settings,
    account: Account,
    host: Host,
    status_code: int = 200,
    **extra: Any,
) -> Response:
    # The key card sits outside the polled panel: the text to sign (and a pasted
    # signature) must not change under the provider while they sign.
    profile = providers.profile_of(db, account)
    db.commit()
    return render(
        request,
        "provider/host.html",
        {
            "title": f"Host {host.id}",
            "nav": "hosts",
            "key": host_keys.to_sign(host),
            "wallet": profile.wallet_address,
            **_host_context(db, settings, host),
            **extra,
        },
        status_code=status_code,
    )


@router.get("/hosts/{host_id}")
def host_page(
    request: Request, host_id: str, db: Db, settings: Settings, account: Provider
) -> Response:
    return _host_page(request, db, settings, account, _owned_host(db, account, host_id))


def _delegated_host(message: str) -> str | None:
    try:
        return parse_delegation(message).host_id
    except SignatureError:
        return None  # host_keys.delegate says what is wrong with it


@router.post("/hosts/{host_id}/delegation")
def delegate_host_key(
    request: Request, host_id: str, form: Form, db: Db, settings: Settings, account: Provider
) -> Response:
    """The wallet's signature of the delegation text (from the extension or pasted)."""
    host = _owned_host(db, account, host_id)
    values = {
        "message": str(form.get("message", "")),
        "signature": str(form.get("signature", "")).strip(),
    }
    try:
        body = DelegationIn.model_validate(values)
        if _delegated_host(body.message) not in (None, host.id):
            raise InvalidError("this text delegates another host's key: reload the page")
        host_keys.delegate(db, body.message, body.signature, settings.signature_max_skew)
    except ValidationError as exc:
        errors = field_errors(exc)
        return _host_page(
            request, db, settings, account, host, 422,
            errors={"signature": errors.get("signature") or errors.get("message", "invalid")},
            values=values,
        )  # fmt: skip
    except KumulusError as exc:
        db.rollback()
        return _host_page(
            request, db, settings, account, host, status_of(exc),
            errors={"signature": exc.detail}, values=values,
        )  # fmt: skip
    db.refresh(host)
    return _host_page(request, db, settings, account, host, flash="Host key delegated.")


@router.post("/hosts/{host_id}/revoke-key")
def revoke_host_key(
    request: Request, host_id: str, form: Form, db: Db, settings: Settings, account: Provider
) -> Response:
    host = _owned_host(db, account, host_id)
    try:
        host_keys.revoke(db, host)
    except KumulusError as exc:
        db.rollback()
        return _host_page(
            request, db, settings, account, host, status_of(exc), key_error=exc.detail
        )
    return _host_page(
        request, db, settings, account, host,
        flash="Host key revoked: the host takes no new VMs and its reports are refused. "
        "Run provider-setup.sh on it again to give it a new key.",
    )  # fmt: skip


@router.post("/hosts/{host_id}/draining")
def set_draining(
    request: Request, host_id: str, form: Form, db: Db, settings: Settings, account: Provider
) -> Response:
    """Drain (`draining=true`: no new VM is placed on the host, its VMs keep running) or
    undrain it. Answers the fragment the button sat in (the host list's rows or the host
    panel: htmx's HX-Target), or the host's page for a plain form post."""
    host = hosts.set_draining(db, account, host_id, str(form.get("draining")) == "true")
    target = request.headers.get("hx-target")
    if target == "host-rows":
        return render(request, "provider/_host_rows.html", _hosts_context(db, settings, account))
    if target == "host-detail":
        return render(request, "provider/_host_panel.html", _host_context(db, settings, host))
    return _host_page(request, db, settings, account, host)


@router.get("/hosts/{host_id}/panel")
def host_panel(
    request: Request, host_id: str, db: Db, settings: Settings, account: Provider
) -> Response:
    host = _owned_host(db, account, host_id)
    return render(request, "provider/_host_panel.html", _host_context(db, settings, host))


# -- wallet --------------------------------------------------------------------------------


def _wallet_page(
    request: Request,
    db: Db,
    settings: Settings,
    account: Account,
    status_code: int = 200,
    **extra: Any,
) -> Response:
    challenge = new_challenge(db, account, settings.challenge_ttl, "")
    profile = providers.profile_of(db, account)
    db.commit()
    return render(
        request,
        "provider/wallet.html",
        {
            "title": "Wallet",
            "nav": "wallet",
            "challenge": challenge,
            "wallet": profile.wallet_address,
            "payouts_from": payout_wallet.payouts_from(profile, utcnow()),
            "cooldown_hours": round(settings.wallet_cooldown / 3600, 1),
            **extra,
        },
        status_code=status_code,
    )


@router.get("/wallet")
def wallet_page(request: Request, db: Db, settings: Settings, account: Provider) -> Response:
    return _wallet_page(request, db, settings, account)


@router.post("/wallet")
def link_wallet(
    request: Request,
    form: Form,
    db: Db,
    settings: Settings,
    account: Provider,
    limits: Annotated[RateLimits, Depends(get_rate_limits)],
) -> Response:
    values = {
        "challenge_id": str(form.get("challenge_id", "")),
        "address": str(form.get("address", "")).strip(),
        "signature": str(form.get("signature", "")).strip(),
    }
    password = str(form.get("password", ""))[:256]
    try:
        body = ProviderWalletLinkIn.model_validate({**values, "password": password or None})
        providers.link_wallet(db, settings, limits, account, body)
    except ValidationError as exc:
        return _wallet_page(
            request, db, settings, account, 422, errors=field_errors(exc), values=values
        )
    except KumulusError as exc:
        db.rollback()
        field = {422: "signature", 403: "password"}.get(status_of(exc), "address")
        return _wallet_page(
            request,
            db,
            settings,
            account,
            status_of(exc),
            errors={field: exc.detail},
            values=values,
        )
    return _wallet_page(request, db, settings, account, flash="Wallet linked.")


# -- profile -------------------------------------------------------------------------------

_PRICE_FIELDS = {
    "prices_cpu": "price_cpu",
    "prices_memory_gib": "price_memory_gib",
    "prices_disk_gib": "price_disk_gib",
}


def _profile_values(db: Db, settings: Settings, account: Account) -> dict[str, Any]:
    profile = providers.profile_of(db, account)
    prices = prices_out(settings, *starting_prices(settings, profile))
    db.commit()
    return {
        "name": profile.name,
        "contact": profile.contact,
        "country": profile.country,
        "region": profile.region,
        "price_cpu": prices.cpu,
        "price_memory_gib": prices.memory_gib,
        "price_disk_gib": prices.disk_gib,
    }


def _profile_page(
    request: Request,
    settings: Settings,
    values: dict[str, Any],
    status_code: int = 200,
    **extra: Any,
) -> Response:
    context = {"title": "Profile", "nav": "profile", "symbol": settings.token_symbol}
    return render(
        request,
        "provider/profile.html",
        {**context, "values": values, **extra},
        status_code=status_code,
    )


@router.get("/profile")
def profile_page(request: Request, db: Db, settings: Settings, account: Provider) -> Response:
    return _profile_page(request, settings, _profile_values(db, settings, account))


@router.post("/profile")
def save_profile(
    request: Request, form: Form, db: Db, settings: Settings, account: Provider
) -> Response:
    values = {
        k: str(form.get(k, "")).strip()
        for k in ("name", "contact", "country", "region", "price_cpu", "price_memory_gib")
    }
    values["price_disk_gib"] = str(form.get("price_disk_gib", "")).strip()
    values["country"] = values["country"].upper()
    errors: dict[str, str] = {}
    try:
        body = ProviderProfileIn.model_validate(
            {
                "name": values["name"],
                "contact": values["contact"],
                "country": values["country"],
                "region": values["region"].lower(),
                "prices": {
                    "cpu": values["price_cpu"],
                    "memory_gib": values["price_memory_gib"],
                    "disk_gib": values["price_disk_gib"],
                },
            }
        )
        providers.update_profile(db, settings, account, body)
    except ValidationError as exc:
        errors = field_errors(exc, _PRICE_FIELDS)
    except KumulusError as exc:  # too many decimals, or over the limit
        db.rollback()
        what, _, _ = exc.detail.partition(":")
        field = {"prices.memoryGib": "price_memory_gib", "prices.diskGib": "price_disk_gib"}
        errors[field.get(what, "price_cpu")] = exc.detail.partition(": ")[2]
    if errors:
        return _profile_page(request, settings, values, 422, errors=errors)
    return _profile_page(
        request,
        settings,
        _profile_values(db, settings, account),
        flash="Profile saved. New hosts charge these prices; set a host's own under Hosts.",
    )
