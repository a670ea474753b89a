"""An error detail read back from another party is bounded.

A provider's agent writes the `detail` of its errors; the backend keeps it as the VM's
failureReason (a Text column, in every list answer afterwards) and passes it on in its own
errors. Without a bound, one hostile agent answering a create with a detail of megabytes
bloats the database and every VM list of the developers it refused."""

from __future__ import annotations

import httpx

from kumulus.client import AgentClient, ApiError, CallPolicy
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.signed_agent import signed_by


def test_a_huge_detail_from_an_agent_is_cut() -> None:
    huge = "x" * 5_000_000

    def answer(_: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json={"detail": huge, "code": "conflict"})

    host_key = keypair_from_mnemonic(new_mnemonic())
    client = AgentClient(
        "http://agent.invalid",
        "h1",
        keypair_from_mnemonic(new_mnemonic()),
        host_key.ss58_address,
        CallPolicy(allow_private=True),  # nothing is dialled: the transport answers
        transport=signed_by(host_key, answer),
    )
    try:
        client.stop_vm("v1")
    except ApiError as exc:
        assert exc.status == 409 and exc.code == "conflict"
        assert 0 < len(exc.detail) <= 2000
    else:
        raise AssertionError("a 409 must raise")
