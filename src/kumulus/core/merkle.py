"""A binary Merkle tree over JSON records (SHA-256, domain-separated leaves and nodes, an
odd node carried up unchanged), with inclusion proofs anyone can check offline."""

from __future__ import annotations

import hashlib
import json
from typing import Any

Proof = list[tuple[str, str]]  # (side of the sibling: "L" | "R", sibling hash hex)


def canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def leaf_hash(record: dict[str, Any]) -> bytes:
    return hashlib.sha256(b"\x00" + canonical(record)).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_and_proofs(records: list[dict[str, Any]]) -> tuple[str, list[Proof]]:
    """The root (hex) of `records` and each record's inclusion proof."""
    if not records:
        raise ValueError("nothing to anchor")
    level = [leaf_hash(r) for r in records]
    positions = list(range(len(records)))  # each leaf's index within the current level
    proofs: list[Proof] = [[] for _ in records]
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level), 2):
            nxt.append(_node(level[i], level[i + 1]) if i + 1 < len(level) else level[i])
        for leaf, pos in enumerate(positions):
            sibling = pos ^ 1
            if sibling < len(level):
                side = "L" if sibling < pos else "R"
                proofs[leaf].append((side, level[sibling].hex()))
            positions[leaf] = pos // 2
        level = nxt
    return level[0].hex(), proofs


def verify(record: dict[str, Any], proof: Proof, root: str) -> bool:
    current = leaf_hash(record)
    for side, sibling_hex in proof:
        sibling = bytes.fromhex(sibling_hex)
        current = _node(sibling, current) if side == "L" else _node(current, sibling)
    return current.hex() == root
