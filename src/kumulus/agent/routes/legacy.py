"""The original design document's routes, kept as thin aliases of the REST handlers so its
guide (`curl -X POST ... /create-vm`) keeps working."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from kumulus.agent.auth import Caller
from kumulus.agent.routes import vms
from kumulus.agent.routes.deps import IdempotencyKey, Service
from kumulus.core.auth_first import AuthFirstRoute
from kumulus.core.openapi_statuses import refusals
from kumulus.core.schemas import VMCreate, VMDeleted, VMIdBody, VMLogs, VMPublic

# Each names its VM in the body: an unknown id is a 404, as on the REST routes.
router = APIRouter(tags=["original routes"], responses=refusals(404), route_class=AuthFirstRoute)


@router.post(
    "/create-vm",
    response_model=VMPublic,
    status_code=status.HTTP_201_CREATED,
    responses=refusals(409),
)
def create_vm(
    body: VMCreate, caller: Caller, service: Service, response: Response, key: IdempotencyKey = None
) -> VMPublic:
    return vms.create_vm(body, caller, service, response, key)


@router.post("/start-vm", response_model=VMPublic)
def start_vm(body: VMIdBody, caller: Caller, service: Service) -> VMPublic:
    return vms.start_vm(body.vm_id, caller, service)


@router.post("/stop-vm", response_model=VMPublic)
def stop_vm(body: VMIdBody, caller: Caller, service: Service) -> VMPublic:
    return vms.stop_vm(body.vm_id, caller, service)


@router.post("/delete-vm", response_model=VMDeleted)
def delete_vm(body: VMIdBody, caller: Caller, service: Service) -> VMDeleted:
    return vms.delete_vm(body.vm_id, caller, service)


@router.post("/get-vm-status", response_model=VMPublic)
def get_vm_status(body: VMIdBody, caller: Caller, service: Service) -> VMPublic:
    return vms.get_vm(body.vm_id, caller, service)


@router.post("/get-vm-logs", response_model=VMLogs)
def get_vm_logs(body: VMIdBody, caller: Caller, service: Service) -> VMLogs:
    return vms.vm_logs(body.vm_id, caller, service)
