"""Anchored digests and the inclusion proofs of records about the caller."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from kumulus.backend import anchors
from kumulus.backend.deps import CurrentAccount, Db, DbId, Settings
from kumulus.backend.paging import After, Limit
from kumulus.backend.schemas import AnchoredRecordOut
from kumulus.core.auth_first import AuthFirstRoute
from kumulus.core.openapi_statuses import refusals
from kumulus.core.schemas import Page

router = APIRouter(prefix="/v1/anchors", tags=["billing"], route_class=AuthFirstRoute)


@router.get("/mine", response_model=Page[AnchoredRecordOut])
def my_records(
    account: CurrentAccount, db: Db, limit: Limit = 50, after: After = None
) -> Page[AnchoredRecordOut]:
    """Anchored records about you (usage you paid or earned; your hosts' reputation),
    newest first."""
    rows, next_cursor = anchors.records_page(db, account.id, limit, after)
    return Page(
        items=[
            AnchoredRecordOut(
                anchor_id=a.id, index=leaf.index, block_number=a.block_number, record=leaf.record
            )
            for leaf, a in rows
        ],
        next=next_cursor,
    )


@router.get("/{anchor_id}/proofs/{index}", responses=refusals(409))
def proof(
    anchor_id: DbId,
    index: Annotated[int, Path(ge=0, le=10_000_000)],
    account: CurrentAccount,
    request: Request,
    db: Db,
    settings: Settings,
) -> dict[str, Any]:
    """Everything `kumulus verify` needs to check this record against the chain."""
    key = getattr(request.app.state, "anchor_key", None)
    return anchors.proof_for(
        db, account.id, anchor_id, index, settings.chain_url or "",
        key.ss58_address if key else None,
    )  # fmt: skip
