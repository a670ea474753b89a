"""Checking an anchored record against the chain, trusting no backend: the Merkle proof
must lead to the root, and the root must be in a remark signed by the platform's anchor
key in a finalized block of the chain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kumulus.chain.client import ChainClient, ChainError
from kumulus.core.merkle import verify as merkle_verify


class ProofDocumentError(ValueError):
    """The document is not a proof document (GET /v1/anchors/{id}/proofs/{index})."""


class NotVerifiedError(Exception):
    """The record is not (provably) anchored: the reason says which link fails."""


@dataclass(frozen=True)
class Verified:
    root: str
    block_number: int


def verify_proof(doc: Any, chain_url: str | None, signer: str | None) -> Verified:
    """Check `doc` against the chain at `chain_url` (default: the document's own) and
    the anchor address `signer` (default: the document's own). ProofDocumentError for a
    malformed document, NotVerifiedError when a link fails, ChainError when the node
    cannot be asked."""
    try:
        record, proof, root = doc["record"], [tuple(p) for p in doc["proof"]], doc["root"]
        remark, block_hash = doc["remark"].encode(), doc["blockHash"]
        number = int(doc["blockNumber"])
        url = chain_url or doc["chainUrl"]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ProofDocumentError(f"not a proof document: {exc}") from exc
    if not merkle_verify(record, proof, root) or not remark.startswith(
        f"kumulus-anchor:v1:{root}:".encode()
    ):
        raise NotVerifiedError("the record does not belong to the anchored root")
    expected_signer = signer or doc.get("anchorAddress")
    client = ChainClient(url)
    canonical = client.block_hash(number) == block_hash
    final = number <= client.finalized_number()
    on_chain = client.remarks(block_hash)
    if not canonical or not final:
        raise NotVerifiedError(f"block {number} {block_hash} is not a finalized block")
    if not any(
        data == remark
        and (expected_signer is None or client.same_account(who or "", expected_signer))
        for who, data in on_chain
    ):
        raise NotVerifiedError(f"block {number} carries no anchor of root {root} by the platform")
    return Verified(root, number)


__all__ = ["ChainError", "NotVerifiedError", "ProofDocumentError", "Verified", "verify_proof"]
