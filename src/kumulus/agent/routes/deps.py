from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from kumulus.agent.service import VMService


def get_service(request: Request) -> VMService:
    service: VMService = request.app.state.service
    return service


Service = Annotated[VMService, Depends(get_service)]
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", description="retrying with the same key never makes a 2nd VM"),
]
