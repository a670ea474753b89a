"""Whole API answers (every field the backend's schemas require), for fake backends that
test what the CLI does with some of them."""

from __future__ import annotations

from typing import Any

WHEN = "2026-01-01T00:00:00Z"


def vm_body(**over: Any) -> dict[str, Any]:
    """A VMOut as the backend answers it, with `over` (API field names) on top."""
    return {
        "id": "v1", "name": "vm", "username": "dev", "cpu": 1.0, "memory": "1g",
        "disk": "10g", "region": "", "hostId": "h1", "intendedState": "running",
        "actualState": "running", "sshHost": "203.0.113.5", "sshPort": 2201,
        "sshCommand": "ssh -p 2201 dev@203.0.113.5", "failureReason": None,
        "pricePerHour": "0.01", "createdAt": WHEN, **over,
    }  # fmt: skip


def key_body(**over: Any) -> dict[str, Any]:
    return {"id": 1, "name": "k", "fingerprint": "SHA256:x", "publicKey": "ssh-ed25519 AAAA",
            "createdAt": WHEN, **over}  # fmt: skip
