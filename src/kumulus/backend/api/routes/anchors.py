"""Anchored digests and the inclusion proofs of records about the caller."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from sqlalchemy import or_, select

from kumulus.backend import anchors
from kumulus.backend.deps import CurrentAccount, Db, Settings
from kumulus.backend.models import Anchor, AnchorLeaf

router = APIRouter(prefix="/v1/anchors", tags=["billing"])


@router.get("/mine")
def my_records(account: CurrentAccount, db: Db) -> list[dict[str, Any]]:
    """Anchored records about you (usage you paid or earned; your hosts' reputation)."""
    rows = db.execute(
        select(AnchorLeaf, Anchor)
        .join(Anchor, Anchor.id == AnchorLeaf.anchor_id)
        .where(
            Anchor.status == "anchored",
            or_(AnchorLeaf.account_id == account.id, AnchorLeaf.other_account_id == account.id),
        )
        .order_by(Anchor.id.desc(), AnchorLeaf.index)
        .limit(500)
    ).all()
    return [
        {
            "anchorId": a.id,
            "index": leaf.index,
            "blockNumber": a.block_number,
            "record": leaf.record,
        }
        for leaf, a in rows
    ]


@router.get("/{anchor_id}/proofs/{index}")
def proof(
    anchor_id: int,
    index: int,
    account: CurrentAccount,
    request: Request,
    db: Db,
    settings: Settings,
) -> dict[str, Any]:
    """Everything `kumulus verify` needs to check this record against the chain."""
    anchor = db.get(Anchor, anchor_id)
    leaf = db.get(AnchorLeaf, (anchor_id, index))
    if anchor is None or leaf is None or account.id not in (leaf.account_id, leaf.other_account_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no record {anchor_id}/{index} of yours")
    if anchor.status != "anchored":
        raise HTTPException(status.HTTP_409_CONFLICT, "not on chain yet; try again later")
    key = getattr(request.app.state, "anchor_key", None)
    return anchors.proof_document(
        db, anchor, index, settings.chain_url or "", key.ss58_address if key else None
    )
