"""REST surface: /v1/vms and /v1/host."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from kumulus.agent.auth import Caller
from kumulus.agent.routes.deps import IdempotencyKey, Service
from kumulus.core.schemas import ErrorBody, HostInfo, VMCreate, VMDeleted, VMLogs, VMPublic

router = APIRouter(
    prefix="/v1",
    responses={
        401: {"model": ErrorBody},
        404: {"model": ErrorBody},
        409: {"model": ErrorBody},
        422: {"model": ErrorBody},
        502: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
)


@router.get("/vms", response_model=list[VMPublic], tags=["vms"])
def list_vms(_: Caller, service: Service) -> list[VMPublic]:
    return service.list()


@router.post("/vms", response_model=VMPublic, status_code=status.HTTP_201_CREATED, tags=["vms"])
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
def get_vm(vm_id: str, _: Caller, service: Service) -> VMPublic:
    return service.get(vm_id)


@router.delete("/vms/{vm_id}", response_model=VMDeleted, tags=["vms"])
def delete_vm(vm_id: str, _: Caller, service: Service) -> VMDeleted:
    """Remove the VM with all its files and its network."""
    service.delete(vm_id)
    return VMDeleted(vm_id=vm_id)


@router.post("/vms/{vm_id}/start", response_model=VMPublic, tags=["vms"])
def start_vm(vm_id: str, _: Caller, service: Service) -> VMPublic:
    return service.start(vm_id)


@router.post("/vms/{vm_id}/stop", response_model=VMPublic, tags=["vms"])
def stop_vm(vm_id: str, _: Caller, service: Service) -> VMPublic:
    """Stop the VM; its files are kept for the next start."""
    return service.stop(vm_id)


@router.get("/vms/{vm_id}/logs", response_model=VMLogs, tags=["vms"])
def vm_logs(
    vm_id: str, _: Caller, service: Service, tail: Annotated[int, Query(ge=1, le=10000)] = 200
) -> VMLogs:
    return VMLogs(vm_id=vm_id, logs=service.logs(vm_id, tail))


@router.get("/host", response_model=HostInfo, tags=["host"])
def host(_: Caller, service: Service) -> HostInfo:
    """Capacity, reservations and what this host can enforce (disk quota, isolation)."""
    return service.host_info()
