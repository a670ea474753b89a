"""Developer API: SSH keys and VMs (placed by the scheduler on a provider's host)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response, status
from fastapi.responses import JSONResponse

from kumulus.backend import quotes, ssh_keys
from kumulus.backend.converge import Action, parse_wait
from kumulus.backend.deps import CurrentDeveloper, Db, DbId, ResourceId, Settings
from kumulus.backend.models import VM, SshKey
from kumulus.backend.paging import After, Limit
from kumulus.backend.schemas import (
    SshKeyIn,
    SshKeyOut,
    VMCreateIn,
    VMLogsOut,
    VMOut,
    VMQuoteIn,
    VMQuoteOut,
)
from kumulus.backend.vms import VMService
from kumulus.core.auth_first import AuthFirstRoute
from kumulus.core.errors import UpstreamError
from kumulus.core.log_times import LogSince, LogTail
from kumulus.core.openapi_statuses import refusals
from kumulus.core.schemas import Page

router = APIRouter(prefix="/v1", tags=["developer"], route_class=AuthFirstRoute)


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


VMs = Annotated[VMService, Depends(_service)]
# RFC 7240: `Prefer: wait=N` waits up to N seconds (at most 120) for the host to carry the
# change out; without it the answer comes as soon as the change is recorded.
Prefer = Annotated[
    str | None,
    Header(
        max_length=200,
        description="`wait=N`: wait up to N seconds (at most 120) for the host to confirm",
    ),
]
_ACCEPTED: dict[int | str, dict[str, Any]] = {
    202: {"model": VMOut, "description": "recorded; its host has not confirmed yet"}
}


def _changed(vms: VMService, vm: VM, action: Action, prefer: str | None) -> Response:
    """The answer to a lifecycle change: 200 with the VM once its host confirmed, 202
    with it while the change is still being carried out (poll GET /v1/vms/{id})."""
    vms.wait(vm, action, parse_wait(prefer))
    code = status.HTTP_200_OK if vms.converged(vm, action) else status.HTTP_202_ACCEPTED
    return JSONResponse(vms.view(vm).model_dump(mode="json", by_alias=True), status_code=code)


@router.get("/ssh-keys", response_model=Page[SshKeyOut])
def list_keys(
    account: CurrentDeveloper, db: Db, limit: Limit = 50, after: After = None
) -> Page[SshKeyOut]:
    rows, next_cursor = ssh_keys.keys_page(db, account, limit, after)
    return Page(
        items=[SshKeyOut.model_validate(r, from_attributes=True) for r in rows], next=next_cursor
    )


@router.post(
    "/ssh-keys",
    response_model=SshKeyOut,
    status_code=status.HTTP_201_CREATED,
    responses=refusals(409),
)
def add_key(body: SshKeyIn, account: CurrentDeveloper, db: Db, settings: Settings) -> SshKey:
    return ssh_keys.add_key(db, account, body.name, body.public_key, settings.max_ssh_keys)


@router.delete("/ssh-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_key(key_id: DbId, account: CurrentDeveloper, db: Db) -> Response:
    ssh_keys.delete_key(db, account, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/vms", response_model=Page[VMOut])
def list_vms(
    account: CurrentDeveloper, vms: VMs, limit: Limit = 50, after: After = None
) -> Page[VMOut]:
    rows, next_cursor = vms.page(account, limit, after)
    return Page(items=vms.views(rows), next=next_cursor)


@router.post(
    "/vms",
    response_model=VMOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        202: {"model": VMOut, "description": "placed; its host has not answered yet"},
        **refusals(402, 404, 409),
    },
)
def create_vm(
    body: VMCreateIn,
    account: CurrentDeveloper,
    vms: VMs,
    response: Response,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=128)
    ] = None,
    prefer: Prefer = None,
) -> VMOut:
    """Place the VM on an online host that fits and take its prepaid hold, then have the
    host create it. 202 with the VM `pending` as soon as it is placed: the backend asks its
    host until it answers (poll GET /v1/vms/{id} until `running` or `failed`). With
    `Prefer: wait=N`: 201 once the host has it running (sshd answering) within N seconds,
    502 `vm_failed` if it failed, else 202. Errors say why it could not be placed (409
    `no_host_fits`, 402 with the numbers). The same Idempotency-Key gives the same VM."""
    vm = vms.create(account, body, idempotency_key)
    wait = parse_wait(prefer)
    vms.wait(vm, "create", wait)
    if wait and vm.actual_state == "failed":
        raise UpstreamError(f"VM {vm.id} failed: {vm.failure_reason}", code="vm_failed")
    if not vms.converged(vm, "create"):
        response.status_code = status.HTTP_202_ACCEPTED
    return vms.view(vm)


@router.post("/vms/quote", response_model=VMQuoteOut, responses=refusals(402, 404, 409))
def quote_vm(body: VMQuoteIn, account: CurrentDeveloper, db: Db, settings: Settings) -> VMQuoteOut:
    """What this VM would pay per hour if created now (the price on the host the scheduler
    would choose), and the `maxPricePerHour` to send with its create: the price plus the
    platform's tolerance. 409 `no_host_fits`, saying why, when no host would take it."""
    return quotes.quote_vm(db, settings, body)


@router.get("/vms/{vm_id}", response_model=VMOut)
def get_vm(vm_id: ResourceId, account: CurrentDeveloper, vms: VMs) -> VMOut:
    return vms.view(vms.owned(account, vm_id))


@router.post(
    "/vms/{vm_id}/start", response_model=VMOut, responses={**_ACCEPTED, **refusals(402, 409)}
)
def start_vm(
    vm_id: ResourceId, account: CurrentDeveloper, vms: VMs, prefer: Prefer = None
) -> Response:
    """Start the VM: 402 when a full hold at its running price is not covered; 200 once
    its host runs it, 202 while the host has not confirmed (`Prefer: wait=N` to wait)."""
    return _changed(vms, vms.start(vms.owned(account, vm_id)), "start", prefer)


@router.post("/vms/{vm_id}/stop", response_model=VMOut, responses={**_ACCEPTED, **refusals(409)})
def stop_vm(
    vm_id: ResourceId, account: CurrentDeveloper, vms: VMs, prefer: Prefer = None
) -> Response:
    """Stop the VM: it pays the stopped rate from now; 200 once its host stopped it, 202
    while the host has not confirmed (the backend keeps asking)."""
    return _changed(vms, vms.stop(vms.owned(account, vm_id)), "stop", prefer)


@router.delete(
    "/vms/{vm_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        202: {"model": VMOut, "description": "being deleted; its host has not confirmed"},
        **refusals(409),
    },
)
def delete_vm(
    vm_id: ResourceId, account: CurrentDeveloper, vms: VMs, prefer: Prefer = None
) -> Response:
    """Delete the VM: nothing is billed from now and its hold goes back at once. 204 once
    its host removed it; 202 with the VM (`deleting`) while the host has not confirmed:
    the backend finishes the delete as soon as the host answers."""
    vm = vms.delete(vms.owned(account, vm_id))
    vms.wait(vm, "delete", parse_wait(prefer))
    if vm.actual_state == "deleted":
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return JSONResponse(
        vms.view(vm).model_dump(mode="json", by_alias=True),
        status_code=status.HTTP_202_ACCEPTED,
    )


@router.get("/vms/{vm_id}/logs", response_model=VMLogsOut, responses=refusals(409))
def vm_logs(
    vm_id: ResourceId,
    account: CurrentDeveloper,
    vms: VMs,
    tail: LogTail = 200,
    since: LogSince = None,
) -> VMLogsOut:
    """The VM's last `tail` console lines; with `since` (an earlier answer's `until`) only
    those written after it, which is how `kumulus vm logs --follow` polls."""
    vm = vms.owned(account, vm_id)
    chunk = vms.logs(vm, tail, since)
    return VMLogsOut(id=vm.id, logs=chunk.text, until=chunk.until)
