"""Anchoring: each period, a Merkle root over the period's usage transactions and the hosts'
reputation scores goes on chain (System.remark_with_event). A developer or provider can get
the inclusion proof of a record about them and check it with `kumulus verify`, against the
chain, without trusting the backend.

The remark is `kumulus-anchor:v1:<root hex>:<anchor id>`; it is signed by the anchor key,
which is never used for payouts (their nonces must stay ours)."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session
from substrateinterface import Keypair

from kumulus.backend import ledger, paging
from kumulus.backend.clock import aware, utcnow
from kumulus.backend.models import Anchor, AnchorLeaf, Host, LedgerEntry
from kumulus.chain.client import ChainClient, SignedExtrinsic
from kumulus.core.errors import ConflictError, NotFoundError
from kumulus.core.jobs import check_lease
from kumulus.core.merkle import root_and_proofs

log = logging.getLogger(__name__)
PREFIX = b"kumulus-anchor:v1:"


def remark_of(anchor: Anchor) -> bytes:
    return PREFIX + f"{anchor.root}:{anchor.id}".encode()


# Entries younger than this may belong to a transaction still committing elsewhere (ids are
# handed out before commit); they wait for the next digest instead of being skipped forever.
SETTLE = timedelta(seconds=10)


def _usage_records(db: Session, after_id: int, until: datetime) -> tuple[list[dict[str, Any]], int]:
    """Usage transactions whose legs have ids above `after_id` and are older than SETTLE;
    returns them and the highest leg id taken."""
    legs: dict[str, list[LedgerEntry]] = defaultdict(list)
    top = after_id
    for leg in db.scalars(
        select(LedgerEntry)
        .where(
            LedgerEntry.kind.in_(("usage", "fee")),
            LedgerEntry.id > after_id,
            LedgerEntry.created_at <= until - SETTLE,
        )
        .order_by(LedgerEntry.id)
    ):
        legs[leg.txn_id].append(leg)
        top = max(top, leg.id)
    records = []
    for txn, parts in legs.items():
        # A usage transaction moves money out of a VM's holds (promotional credit first) to
        # the provider's accounts and the platform's fee accounts.
        held = [p for p in parts if p.account_type in (ledger.HOLD, ledger.HOLD_PROMO)]
        earned = [p for p in parts if p.account_type in (ledger.PROVIDER, ledger.PROVIDER_PROMO)]
        fees = [p for p in parts if p.account_type in (ledger.PLATFORM, ledger.PLATFORM_PROMO)]
        records.append(
            {
                "type": "usage",
                "txn": txn,
                "vm": parts[0].vm_id,
                "developer": held[0].account_id if held else None,
                "provider": earned[0].account_id if earned else None,
                "charged": -sum(p.amount for p in held),
                "earned": sum(p.amount for p in earned),
                "promo": -sum(p.amount for p in held if p.account_type == ledger.HOLD_PROMO),
                "fee": sum(p.amount for p in fees),
                "memo": parts[0].memo,
                "at": aware(parts[0].created_at).isoformat(),
            }
        )
    return records, top


def _reputation_records(db: Session, at: datetime) -> list[dict[str, Any]]:
    return [
        {
            "type": "reputation",
            "host": h.id,
            "provider": h.account_id,
            "score": round(h.reputation, 6),
            "uptime24h": None if h.uptime_24h is None else round(h.uptime_24h, 6),
            "uptime7d": None if h.uptime_7d is None else round(h.uptime_7d, 6),
            "leasesCompleted": h.leases_completed,
            "leasesFailed": h.leases_failed,
            "at": at.isoformat(),
        }
        for h in db.scalars(select(Host).order_by(Host.id))
    ]


def build(db: Session, now: datetime | None = None) -> Anchor | None:
    """Digest everything since the previous anchor into a new pending anchor (commits);
    None when a pending one waits or there is nothing to anchor."""
    if db.scalar(select(Anchor.id).where(Anchor.status == "pending")) is not None:
        return None
    now = now or utcnow()
    previous = db.scalars(select(Anchor).order_by(Anchor.id.desc()).limit(1)).first()
    since = aware(previous.period_end) if previous else datetime(1970, 1, 1, tzinfo=UTC)
    usage, top = _usage_records(db, previous.max_entry_id if previous else 0, now)
    records = usage + _reputation_records(db, now)
    if not records:
        return None
    root, _ = root_and_proofs(records)
    anchor = Anchor(
        period_start=since,
        period_end=now,
        root=root,
        leaf_count=len(records),
        max_entry_id=top,
        status="pending",
        created_at=now,
    )
    db.add(anchor)
    db.flush()
    for index, record in enumerate(records):
        owner = record.get("developer") if record["type"] == "usage" else record.get("provider")
        other = record.get("provider") if record["type"] == "usage" else None
        db.add(
            AnchorLeaf(
                anchor_id=anchor.id,
                index=index,
                record=record,
                account_id=owner,
                other_account_id=other,
            )
        )
    db.commit()
    return anchor


def submit_pending(
    db: Session, chain: ChainClient, key: Keypair, genesis: str | None = None
) -> int:
    """Put pending anchors on chain (whose genesis hash is `genesis`, recorded on each);
    returns how many were anchored.

    Each remark goes with a nonce of the anchor key fixed and committed before the first
    send (with the finalized block before it), so however many holders send it (one that
    lost its lease mid-call, or died before recording the block), the chain includes one.
    An anchor whose nonce the chain has used is looked up on chain instead of sent."""
    done = 0
    for anchor in db.scalars(select(Anchor).where(Anchor.status == "pending")).all():
        on_chain = chain.nonce(key.ss58_address)
        ours = anchor.nonce is not None and anchor.genesis_hash == genesis
        if ours and anchor.nonce is not None and anchor.nonce < on_chain:
            # Its nonce was used: by this remark (the anchor key sends nothing else), sent
            # by a holder that lost its lease or died before recording it.
            found = _sent_earlier(chain, key, anchor)
            if found is None:
                log.warning(
                    "anchor %d: nonce %d of the anchor key was used, but not found on "
                    "chain from block %s", anchor.id, anchor.nonce, anchor.from_block,
                )  # fmt: skip
                break
            if not found.success:  # it paid a fee and anchored nothing: a new nonce
                anchor.nonce = None
                db.commit()
                break
            _anchored(anchor, found.block_hash, found.block_number, found.extrinsic_hash)
            db.commit()
            done += 1
            continue
        if not ours or anchor.nonce != on_chain:
            # None yet, another chain's, or ahead of the key's (the chain was reset): a
            # node would keep a nonce ahead of the key's waiting for ever. Nonces only
            # grow on a chain, so one ahead was never used here.
            anchor.nonce = on_chain
            anchor.from_block = chain.finalized_number()
            anchor.genesis_hash = genesis
            db.commit()  # fenced: a holder that lost its lease stops here
        # Only while the job surely holds its lease (a replaced holder's copy would be
        # refused by the chain for its nonce, but costs a call).
        check_lease(before_effect=True)
        receipt = chain.remark(key, remark_of(anchor), nonce=anchor.nonce)
        _anchored(anchor, receipt.block_hash, receipt.block_number, receipt.extrinsic_hash)
        db.commit()
        done += 1
    return done


def _anchored(anchor: Anchor, block_hash: str, block_number: int, extrinsic_hash: str) -> None:
    anchor.status = "anchored"
    anchor.block_hash, anchor.block_number = block_hash, block_number
    anchor.extrinsic_hash = extrinsic_hash
    log.info("anchored %d records (root %s) in block %d", anchor.leaf_count, anchor.root,
             block_number)  # fmt: skip


# Extrinsics are mortal for 64 blocks from the best block when signed (chain/client.py), a
# few blocks past the finalized one recorded before: the remark lands within this many.
_SCAN_BLOCKS = 256


def _sent_earlier(chain: ChainClient, key: Keypair, anchor: Anchor) -> SignedExtrinsic | None:
    """The anchor key's extrinsic with the anchor's nonce, from the block before its first
    send up to the finalized head (at most _SCAN_BLOCKS); None when not found."""
    first = int(anchor.from_block or 0)
    head = min(chain.finalized_number(), first + _SCAN_BLOCKS)
    for number in range(first, head + 1):
        for ext in chain.extrinsics_by(number, key.ss58_address):
            if ext.nonce == anchor.nonce:
                return ext
    return None


def proof_document(
    db: Session, anchor: Anchor, index: int, chain_url: str, anchor_address: str | None = None
) -> dict[str, Any]:
    """What `kumulus verify` needs to check one record on its own."""
    leaves = list(
        db.scalars(
            select(AnchorLeaf).where(AnchorLeaf.anchor_id == anchor.id).order_by(AnchorLeaf.index)
        )
    )
    root, proofs = root_and_proofs([leaf.record for leaf in leaves])
    assert root == anchor.root, "stored leaves no longer match the anchored root"
    return {
        "record": leaves[index].record,
        "proof": proofs[index],
        "root": anchor.root,
        "anchorId": anchor.id,
        "remark": remark_of(anchor).decode(),
        "blockHash": anchor.block_hash,
        "blockNumber": anchor.block_number,
        "chainUrl": chain_url,
        "anchorAddress": anchor_address,
    }


def records_page(
    db: Session, account_id: int, limit: int, after: str | None
) -> tuple[list[tuple[AnchorLeaf, Anchor]], str | None]:
    """Anchored records about the account (usage it paid or earned, its hosts'
    reputation), newest first, each with its anchor."""
    stmt = (
        select(AnchorLeaf)
        .join(Anchor, Anchor.id == AnchorLeaf.anchor_id)
        .where(
            Anchor.status == "anchored",
            or_(AnchorLeaf.account_id == account_id, AnchorLeaf.other_account_id == account_id),
        )
    )
    leaves: list[AnchorLeaf]
    leaves, next_cursor = paging.page(
        db, stmt, [AnchorLeaf.anchor_id, AnchorLeaf.index], limit, after, descending=True
    )
    found = {
        a.id: a
        for a in db.scalars(select(Anchor).where(Anchor.id.in_({x.anchor_id for x in leaves})))
    }
    return [(leaf, found[leaf.anchor_id]) for leaf in leaves], next_cursor


def proof_for(
    db: Session, account_id: int, anchor_id: int, index: int, chain_url: str,
    anchor_address: str | None,
) -> dict[str, Any]:  # fmt: skip
    """The proof document of one record about the account; NotFoundError if there is no
    such record of theirs, ConflictError while it is not on chain yet."""
    anchor = db.get(Anchor, anchor_id)
    leaf = db.get(AnchorLeaf, (anchor_id, index))
    if anchor is None or leaf is None or account_id not in (leaf.account_id, leaf.other_account_id):
        raise NotFoundError(f"no record {anchor_id}/{index} of yours")
    if anchor.status != "anchored":
        raise ConflictError("not on chain yet; try again later", code="not_anchored", retry=True)
    return proof_document(db, anchor, index, chain_url, anchor_address)
