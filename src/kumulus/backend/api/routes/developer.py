"""Developer API: SSH keys and VMs (placed by the scheduler on a provider's host)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from kumulus.backend.clock import utcnow
from kumulus.backend.deps import CurrentDeveloper, Db, Settings
from kumulus.backend.models import SshKey
from kumulus.backend.schemas import SshKeyIn, SshKeyOut, VmCreateIn, VmLogsOut, VmOut
from kumulus.backend.vms import VmService
from kumulus.core.sshkeys import parse_ssh_public_key

router = APIRouter(prefix="/v1", tags=["developer"])


def _service(request: Request, db: Db, settings: Settings) -> VmService:
    return VmService(db, settings, request.app.state.keypair)


Vms = Annotated[VmService, Depends(_service)]


@router.get("/ssh-keys", response_model=list[SshKeyOut])
def list_keys(account: CurrentDeveloper, db: Db) -> list[SshKey]:
    return list(
        db.scalars(select(SshKey).where(SshKey.account_id == account.id).order_by(SshKey.id))
    )


@router.post("/ssh-keys", response_model=SshKeyOut, status_code=status.HTTP_201_CREATED)
def add_key(body: SshKeyIn, account: CurrentDeveloper, db: Db) -> SshKey:
    parsed = parse_ssh_public_key(body.public_key)
    key = SshKey(
        account_id=account.id,
        name=body.name,
        public_key=parsed.line,
        fingerprint=parsed.fingerprint,
        created_at=utcnow(),
    )
    db.add(key)
    try:
        db.commit()
    except IntegrityError as exc:
        db.rollback()
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"this key ({parsed.fingerprint}) is saved already"
        ) from exc
    return key


@router.delete("/ssh-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_key(key_id: int, account: CurrentDeveloper, db: Db) -> Response:
    key = db.get(SshKey, key_id)
    if key is None or key.account_id != account.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no SSH key {key_id}")
    db.delete(key)
    db.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/vms", response_model=list[VmOut])
def list_vms(account: CurrentDeveloper, vms: Vms) -> list[VmOut]:
    return [vms.view(vm) for vm in vms.list(account)]


@router.post("/vms", response_model=VmOut, status_code=status.HTTP_201_CREATED)
def create_vm(
    body: VmCreateIn,
    account: CurrentDeveloper,
    vms: Vms,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> VmOut:
    """Place the VM on an online host that fits and create it there. Answers when the
    host's agent has it running (sshd answering) or says why it could not."""
    return vms.view(vms.create(account, body, idempotency_key))


@router.get("/vms/{vm_id}", response_model=VmOut)
def get_vm(vm_id: str, account: CurrentDeveloper, vms: Vms) -> VmOut:
    return vms.view(vms.owned(account, vm_id))


@router.post("/vms/{vm_id}/start", response_model=VmOut)
def start_vm(vm_id: str, account: CurrentDeveloper, vms: Vms) -> VmOut:
    return vms.view(vms.start(vms.owned(account, vm_id)))


@router.post("/vms/{vm_id}/stop", response_model=VmOut)
def stop_vm(vm_id: str, account: CurrentDeveloper, vms: Vms) -> VmOut:
    return vms.view(vms.stop(vms.owned(account, vm_id)))


@router.delete(
    "/vms/{vm_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={202: {"model": VmOut, "description": "host away: deleted when it is back"}},
)
def delete_vm(vm_id: str, account: CurrentDeveloper, vms: Vms) -> Response:
    """204 when the VM is gone. 202 with the VM (actual state `deleting`) when its host is
    offline: the backend finishes the delete as soon as the host is back."""
    vm = vms.owned(account, vm_id)
    if vms.delete(vm):
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    return JSONResponse(
        vms.view(vm).model_dump(mode="json", by_alias=True),
        status_code=status.HTTP_202_ACCEPTED,
    )


@router.get("/vms/{vm_id}/logs", response_model=VmLogsOut)
def vm_logs(
    vm_id: str,
    account: CurrentDeveloper,
    vms: Vms,
    tail: Annotated[int, Query(ge=1, le=10000)] = 200,
) -> VmLogsOut:
    vm = vms.owned(account, vm_id)
    return VmLogsOut(id=vm.id, logs=vms.logs(vm, tail))
