"""REST surface: /v1/vms and /v1/host."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from kumulus.agent.auth import Caller
from kumulus.agent.routes.deps import IdempotencyKey, Service
from kumulus.core.auth_first import AuthFirstRoute
from kumulus.core.cursors import After, Limit, page_list
from kumulus.core.log_times import LogSince, LogTail
from kumulus.core.openapi_statuses import refusals
from kumulus.core.schemas import HostInfo, Page, VMCreate, VMDeleted, VMLogs, VMPublic

router = APIRouter(prefix="/v1", route_class=AuthFirstRoute)
# Bounded; an id in no VM's format is a 404 (the backend reads 404 on delete as "gone").
VMIdPath = Annotated[str, Path(min_length=1, max_length=64)]


@router.get("/vms", response_model=Page[VMPublic], tags=["vms"])
def list_vms(_: Caller, service: Service, limit: Limit = 50, after: After = None) -> Page[VMPublic]:
    """This agent's VMs, oldest first."""
    items, next_cursor = page_list(
        service.list(), lambda vm: (vm.created_at.isoformat(), vm.vm_id), limit, after
    )
    return Page(items=items, next=next_cursor)


@router.post(
    "/vms",
    response_model=VMPublic,
    status_code=status.HTTP_201_CREATED,
    tags=["vms"],
    responses=refusals(409),
)
def create_vm(
    body: VMCreate, _: Caller, service: Service, response: Response, key: IdempotencyKey = None
) -> VMPublic:
    """Create and start a VM. Answers once sshd answers (status Running), or with status
    Starting if the host is slow. A repeated Idempotency-Key returns the first VM (200)."""
    vm, created = service.create(body, key)
    if not created:
        response.status_code = status.HTTP_200_OK
    return vm


@router.get("/vms/{vm_id}", response_model=VMPublic, tags=["vms"])
def get_vm(vm_id: VMIdPath, _: Caller, service: Service) -> VMPublic:
    return service.get(vm_id)


@router.delete("/vms/{vm_id}", response_model=VMDeleted, tags=["vms"])
def delete_vm(vm_id: VMIdPath, _: Caller, service: Service) -> VMDeleted:
    """Remove the VM with all its files and its network."""
    service.delete(vm_id)
    return VMDeleted(vm_id=vm_id)


@router.post("/vms/{vm_id}/start", response_model=VMPublic, tags=["vms"], responses=refusals(409))
def start_vm(vm_id: VMIdPath, _: Caller, service: Service) -> VMPublic:
    return service.start(vm_id)


@router.post("/vms/{vm_id}/stop", response_model=VMPublic, tags=["vms"])
def stop_vm(vm_id: VMIdPath, _: Caller, service: Service) -> VMPublic:
    """Stop the VM; its files are kept for the next start."""
    return service.stop(vm_id)


@router.get("/vms/{vm_id}/logs", response_model=VMLogs, tags=["vms"])
def vm_logs(
    vm_id: VMIdPath,
    _: Caller,
    service: Service,
    tail: LogTail = 200,
    since: LogSince = None,
) -> VMLogs:
    """The last `tail` lines, only those after `since` (a previous answer's `until`)."""
    chunk = service.logs(vm_id, tail, since)
    return VMLogs(vm_id=vm_id, logs=chunk.text, until=chunk.until)


@router.get("/host", response_model=HostInfo, tags=["host"])
def host(_: Caller, service: Service) -> HostInfo:
    """Capacity, reservations and what this host can enforce (disk quota, isolation)."""
    return service.host_info()
