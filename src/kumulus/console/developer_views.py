"""Developer console: SSH keys, creating VMs (with a live price), the VM list and a VM's
page with live state, the ssh line, stop/start/delete and logs. Every action calls the same
functions as the developer API."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy import select

from kumulus.backend import quotes, ssh_keys
from kumulus.backend.deps import Db, Settings
from kumulus.backend.models import VM, Host, SshKey
from kumulus.backend.schemas import SshKeyIn, VMCreateIn, VMQuoteIn
from kumulus.backend.vms import VMService
from kumulus.console.create_stages import create_stages
from kumulus.console.web import Developer, Form, field_errors, redirect, render
from kumulus.core.errors import InvalidError, KumulusError, NotFoundError
from kumulus.core.http import status_of

router = APIRouter(prefix="/console", include_in_schema=False)


@dataclass(frozen=True)
class Preset:
    name: str
    cpu: float
    memory: str
    disk: str

    @property
    def value(self) -> str:
        """The radio's value, "cpu/memory/disk" (console.js matches the fields to it)."""
        return f"{self.cpu:g}/{self.memory}/{self.disk}"


PRESETS = (
    Preset("Nano", 1, "1g", "10g"),
    Preset("Small", 1, "2g", "20g"),
    Preset("Medium", 2, "4g", "40g"),
    Preset("Large", 4, "8g", "80g"),
)
CUSTOM = "custom"
# The form's Idempotency-Key (see create_vm): made once per form shown, sent back with it.
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_-]{1,128}")


def preset_of(cpu: str, memory: str, disk: str) -> str:
    """The preset radio value the size fields amount to, or CUSTOM: the preset shown is
    always the one the fields hold, whatever was checked when they were edited."""
    try:
        cpu = f"{float(cpu):g}"
    except ValueError:
        return CUSTOM
    held = f"{cpu}/{memory.strip().lower()}/{disk.strip().lower()}"
    return next((p.value for p in PRESETS if p.value == held), CUSTOM)


def _service(request: Request, db: Db, settings: Settings) -> VMService:
    state = request.app.state
    return VMService(
        db,
        settings,
        state.keypair,
        getattr(state, "converger", None),
        placer=getattr(state, "placer", None),
        events=getattr(state, "events", None),
    )


# How long a start/stop/delete click waits for the host before the page shows the change
# in progress (the VM panel polls on).
ACTION_WAIT = 10.0


def _keys(db: Db, account_id: int) -> list[SshKey]:
    return list(
        db.scalars(select(SshKey).where(SshKey.account_id == account_id).order_by(SshKey.id))
    )


# -- SSH keys -----------------------------------------------------------------------------


def _keys_page(
    request: Request, db: Db, account_id: int, status_code: int = 200, **extra: Any
) -> Response:
    return render(
        request,
        "developer/keys.html",
        {"title": "SSH keys", "nav": "keys", "keys": _keys(db, account_id), **extra},
        status_code=status_code,
    )


@router.get("/keys")
def keys_page(request: Request, db: Db, account: Developer) -> Response:
    return _keys_page(request, db, account.id)


@router.post("/keys")
async def add_key(
    request: Request, form: Form, db: Db, settings: Settings, account: Developer
) -> Response:
    values = {"name": str(form.get("name", "")).strip(), "public_key": ""}
    text = form.get("public_key") or ""
    upload = form.get("key_file")
    if not str(text).strip() and upload is not None and hasattr(upload, "read"):
        text = (await upload.read(16_384)).decode("utf-8", "replace")
    values["public_key"] = str(text).strip()
    try:
        body = SshKeyIn.model_validate(values)
        ssh_keys.add_key(db, account, body.name, body.public_key, settings.max_ssh_keys)
    except ValidationError as exc:
        return _keys_page(request, db, account.id, 422, errors=field_errors(exc), values=values)
    except KumulusError as exc:
        return _keys_page(
            request,
            db,
            account.id,
            status_of(exc),
            errors={"public_key": exc.detail},
            values=values,
        )
    return _keys_page(request, db, account.id, flash=f"Key “{body.name}” added.")


@router.post("/keys/{key_id}/delete")
def delete_key(request: Request, key_id: int, form: Form, db: Db, account: Developer) -> Response:
    try:
        ssh_keys.delete_key(db, account, key_id)
    except KumulusError as exc:
        return _keys_page(request, db, account.id, status_of(exc), error=exc.detail)
    return redirect(request, "/console/keys")


# -- creating VMs -------------------------------------------------------------------------


def _regions(db: Db) -> list[str]:
    return sorted(r for r in db.scalars(select(Host.region).distinct()) if r)


def _new_vm_page(
    request: Request,
    db: Db,
    account_id: int,
    settings: Settings,
    status_code: int = 200,
    **extra: Any,
) -> Response:
    values = extra.pop("values", None) or {
        "cpu": f"{PRESETS[0].cpu:g}",
        "memory": PRESETS[0].memory,
        "disk": PRESETS[0].disk,
        "name": "vm",
    }
    values["preset"] = preset_of(values["cpu"], values["memory"], values["disk"])
    # A retry of this form (double click, reload after a timeout) must not make a second
    # VM: the key stays with the form until a create with it succeeds.
    if not IDEMPOTENCY_KEY.fullmatch(values.get("idempotency_key", "")):
        values["idempotency_key"] = secrets.token_urlsafe(18)
    return render(
        request,
        "developer/new_vm.html",
        {
            "title": "Create a VM",
            "nav": "new",
            "keys": _keys(db, account_id),
            "presets": PRESETS,
            "regions": _regions(db),
            "symbol": settings.token_symbol,
            "tolerance": f"{settings.quote_tolerance_bps / 100:g}%",
            "values": values,
            **extra,
        },
        status_code=status_code,
    )


def _vm_body(form: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(form values to show again, VMCreateIn input)."""
    values = {
        k: str(form.get(k, "")).strip()
        for k in (
            "preset", "cpu", "memory", "disk", "name", "username", "ssh_key_id", "region",
            "idempotency_key",
        )
    }  # fmt: skip
    values["max_price"] = str(form.get("max_price", "")).strip()
    body: dict[str, Any] = {
        "name": values["name"] or "vm",
        "username": values["username"],
        "ssh_key_id": values["ssh_key_id"] or None,
        "cpu": values["cpu"],
        "memory": values["memory"],
        "disk": values["disk"],
        "region": values["region"] or None,
        "max_price_per_hour": values["max_price"] or None,
    }
    return values, body


@router.get("/vms/new")
def new_vm_page(request: Request, db: Db, settings: Settings, account: Developer) -> Response:
    return _new_vm_page(request, db, account.id, settings)


def _quote_in(raw: dict[str, Any]) -> VMQuoteIn:
    fields = ("cpu", "memory", "disk", "region", "max_price_per_hour")
    return VMQuoteIn.model_validate({k: raw[k] for k in fields})


@router.post("/vms/quote")
def vm_quote(
    request: Request, form: Form, db: Db, settings: Settings, account: Developer
) -> Response:
    """The price-per-hour fragment under the create form (or why nothing fits): the price on
    the host the scheduler would choose now, and, as a hidden field the create posts back,
    the most the VM may then be placed at (quotes.with_tolerance)."""
    _, raw = _vm_body(form)
    context: dict[str, Any] = {}
    try:
        body = _quote_in(raw)
        quoted = quotes.quote_vm(db, settings, body)
    except ValidationError as exc:
        errors = {k: v for k, v in field_errors(exc).items() if k in ("cpu", "memory", "disk")}
        context["quote_error"] = "; ".join(f"{k}: {v}" for k, v in errors.items()) or None
        return render(request, "developer/_quote.html", context)
    except KumulusError as exc:
        context["quote_error"] = exc.detail
        return render(request, "developer/_quote.html", context)
    context["quote"] = f"{quoted.price_per_hour} {quoted.symbol}"
    context["quote_max"] = quoted.max_price_per_hour
    context["quote_max_shown"] = f"{quoted.max_price_per_hour} {quoted.symbol}"
    context["own_max"] = bool(body.max_price_per_hour)
    return render(request, "developer/_quote.html", context)


def _most(db: Db, settings: Settings, form: dict[str, Any], raw: dict[str, Any]) -> str | None:
    """The maxPricePerHour of a create: the developer's own, else the quoted maximum the
    form carries back, else (no quote shown, say without script) one quoted now."""
    if raw["max_price_per_hour"]:
        return str(raw["max_price_per_hour"])
    quoted_max = str(form.get("quoted_max", "")).strip()
    if quoted_max:
        return quoted_max
    try:
        body = _quote_in(raw)
    except ValidationError:
        return None  # the create reports the bad fields
    return quotes.quote_vm(db, settings, body).max_price_per_hour


@router.post("/vms")
def create_vm(
    request: Request, form: Form, db: Db, settings: Settings, account: Developer
) -> Response:
    values, raw = _vm_body(form)
    service = _service(request, db, settings)
    try:
        raw["max_price_per_hour"] = _most(db, settings, form, raw)
        body = VMCreateIn.model_validate(raw)
    except ValidationError as exc:
        errors = field_errors(exc)
        if "max_price_per_hour" in errors:
            errors["max_price"] = errors.pop("max_price_per_hour")
        return _new_vm_page(request, db, account.id, settings, 422, errors=errors, values=values)
    except KumulusError as exc:  # nothing to quote: nothing fits
        return _new_vm_page(
            request, db, account.id, settings, status_of(exc), values=values, error=exc.detail
        )
    try:
        key = values["idempotency_key"]
        vm = service.create(
            account, body, idempotency_key=key if IDEMPOTENCY_KEY.fullmatch(key) else None
        )
    except InvalidError as exc:  # a maximum price over the platform's limit
        return _new_vm_page(
            request, db, account.id, settings, 422, values=values,
            errors={"max_price": exc.detail.partition(": ")[2] or exc.detail},
        )  # fmt: skip
    except KumulusError as exc:
        field = "ssh_key_id" if status_of(exc) == 404 else None
        return _new_vm_page(
            request,
            db,
            account.id,
            settings,
            status_of(exc),
            values=values,
            errors={field: exc.detail} if field else {},
            error=None if field else exc.detail,
        )
    return redirect(request, f"/console/vms/{vm.id}")


# -- VM list and page ---------------------------------------------------------------------


@router.get("/vms")
def vms_page(request: Request, db: Db, settings: Settings, account: Developer) -> Response:
    service = _service(request, db, settings)
    vms = service.views(service.list(account))
    return render(request, "developer/vms.html", {"title": "VMs", "nav": "vms", "vms": vms})


@router.get("/vms/rows")
def vm_rows(request: Request, db: Db, settings: Settings, account: Developer) -> Response:
    service = _service(request, db, settings)
    vms = service.views(service.list(account))
    return render(request, "developer/_vm_rows.html", {"vms": vms})


def _panel_context(service: VMService, vm: VM) -> dict[str, Any]:
    host = service.db.get(Host, vm.host_id) if vm.host_id else None
    view = service.view(vm)
    return {
        "vm": view,
        "host_region": host.region if host else None,
        "stages": create_stages(view),
    }


@router.get("/vms/{vm_id}")
def vm_page(
    request: Request, vm_id: str, db: Db, settings: Settings, account: Developer
) -> Response:
    service = _service(request, db, settings)
    vm = service.owned(account, vm_id)
    return render(
        request,
        "developer/vm.html",
        {"title": vm.name, "nav": "vms", **_panel_context(service, vm)},
    )


@router.get("/vms/{vm_id}/panel")
def vm_panel(
    request: Request, vm_id: str, db: Db, settings: Settings, account: Developer
) -> Response:
    service = _service(request, db, settings)
    try:
        vm = service.owned(account, vm_id)
    except KumulusError:
        return redirect(request, "/console/vms")  # deleted meanwhile
    return render(request, "developer/_vm_panel.html", _panel_context(service, vm))


@router.post("/vms/{vm_id}/{action}")
def vm_action(
    request: Request,
    vm_id: str,
    action: str,
    form: Form,
    db: Db,
    settings: Settings,
    account: Developer,
) -> Response:
    service = _service(request, db, settings)
    vm = service.owned(account, vm_id)
    error = None
    try:
        if action == "start":
            service.wait(service.start(vm), "start", ACTION_WAIT)
        elif action == "stop":
            service.wait(service.stop(vm), "stop", ACTION_WAIT)
        elif action == "delete":
            service.wait(service.delete(vm), "delete", ACTION_WAIT)
            if vm.actual_state == "deleted":
                return redirect(request, "/console/vms")
        else:
            raise NotFoundError(f"no action {action[:20]}")
    except KumulusError as exc:
        error = exc.detail
        db.rollback()
    db.refresh(vm)
    return render(
        request, "developer/_vm_panel.html", {**_panel_context(service, vm), "action_error": error}
    )


@router.get("/vms/{vm_id}/logs")
def vm_logs(
    request: Request, vm_id: str, db: Db, settings: Settings, account: Developer
) -> Response:
    service = _service(request, db, settings)
    vm = service.owned(account, vm_id)
    try:
        text = service.logs(vm, 200).text
    except KumulusError as exc:
        text = f"(logs unavailable: {exc.detail})"
    return render(request, "partials/logs.html", {"logs": text})
