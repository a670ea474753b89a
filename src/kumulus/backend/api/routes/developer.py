"""Developer API: SSH keys and VMs (placed by the scheduler on a provider's host)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse

from kumulus.backend import quotes, ssh_keys
from kumulus.backend.deps import CurrentDeveloper, Db, DbId, ResourceId, Settings
from kumulus.backend.models import SshKey
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
from kumulus.core.schemas import Page

router = APIRouter(prefix="/v1", tags=["developer"])


def _service(request: Request, db: Db, settings: Settings) -> VMService:
    return VMService(db, settings, request.app.state.keypair)


VMs = Annotated[VMService, Depends(_service)]


@router.get("/ssh-keys", response_model=Page[SshKeyOut])
def list_keys(
    account: CurrentDeveloper, db: Db, limit: Limit = 50, after: After = None
) -> Page[SshKeyOut]:
    rows, next_cursor = ssh_keys.keys_page(db, account, limit, after)
    return Page(
        items=[SshKeyOut.model_validate(r, from_attributes=True) for r in rows], next=next_cursor
    )


@router.post("/ssh-keys", response_model=SshKeyOut, status_code=status.HTTP_201_CREATED)
def add_key(body: SshKeyIn, account: CurrentDeveloper, db: Db) -> SshKey:
    return ssh_keys.add_key(db, account, body.name, body.public_key)


@router.delete("/ssh-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_key(key_id: DbId, account: CurrentDeveloper, db: Db) -> Response:
    ssh_keys.delete_key(db, account, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/vms", response_model=Page[VMOut])
def list_vms(
    account: CurrentDeveloper, vms: VMs, limit: Limit = 50, after: After = None
) -> Page[VMOut]:
    rows, next_cursor = vms.page(account, limit, after)
    return Page(items=[vms.view(vm) for vm in rows], next=next_cursor)


@router.post(
    "/vms",
    response_model=VMOut,
    status_code=status.HTTP_201_CREATED,
    responses={202: {"model": VMOut, "description": "placed; its host has not answered yet"}},
)
def create_vm(
    body: VMCreateIn,
    account: CurrentDeveloper,
    vms: VMs,
    response: Response,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=128)
    ] = None,
) -> VMOut:
    """Place the VM on an online host that fits (taking its prepaid hold) and create it
    there. 201 when the host's agent has it running (sshd answering); 202 when the host did
    not answer in time: the VM is `pending` on that host and the backend resolves it there
    (poll GET /v1/vms/{id}); errors say why it could not be made."""
    vm = vms.create(account, body, idempotency_key)
    if vms.awaiting_create(vm):
        response.status_code = status.HTTP_202_ACCEPTED
    return vms.view(vm)


@router.post("/vms/quote", response_model=VMQuoteOut)
def quote_vm(body: VMQuoteIn, account: CurrentDeveloper, db: Db, settings: Settings) -> VMQuoteOut:
    """What this VM would pay per hour if created now (the price on the host the scheduler
    would choose), and the `maxPricePerHour` to send with its create: the price plus the
    platform's tolerance. 409 `no_host_fits`, saying why, when no host would take it."""
    return quotes.quote_vm(db, settings, body)


@router.get("/vms/{vm_id}", response_model=VMOut)
def get_vm(vm_id: ResourceId, account: CurrentDeveloper, vms: VMs) -> VMOut:
    return vms.view(vms.owned(account, vm_id))


@router.post("/vms/{vm_id}/start", response_model=VMOut)
def start_vm(vm_id: ResourceId, account: CurrentDeveloper, vms: VMs) -> VMOut:
    return vms.view(vms.start(vms.owned(account, vm_id)))


@router.post("/vms/{vm_id}/stop", response_model=VMOut)
def stop_vm(vm_id: ResourceId, account: CurrentDeveloper, vms: VMs) -> VMOut:
    return vms.view(vms.stop(vms.owned(account, vm_id)))


@router.delete(
    "/vms/{vm_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={202: {"model": VMOut, "description": "host away: deleted when it is back"}},
)
def delete_vm(vm_id: ResourceId, account: CurrentDeveloper, vms: VMs) -> Response:
    """204 when the VM is gone. 202 with the VM (actual state `deleting`) when its host is
    offline: the backend finishes the delete as soon as the host is back."""
    vm = vms.owned(account, vm_id)
    if vms.delete(vm):
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return JSONResponse(
        vms.view(vm).model_dump(mode="json", by_alias=True),
        status_code=status.HTTP_202_ACCEPTED,
    )


@router.get("/vms/{vm_id}/logs", response_model=VMLogsOut)
def vm_logs(
    vm_id: ResourceId,
    account: CurrentDeveloper,
    vms: VMs,
    tail: Annotated[int, Query(ge=1, le=10000)] = 200,
) -> VMLogsOut:
    vm = vms.owned(account, vm_id)
    return VMLogsOut(id=vm.id, logs=vms.logs(vm, tail))
