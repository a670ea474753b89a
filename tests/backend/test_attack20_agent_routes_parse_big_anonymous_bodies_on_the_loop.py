"""attack20: the agent-facing routes still have FastAPI parse bodies of up to 1 MiB on the
event loop for anyone, the very cost the small anonymous limits (issue 14) were added for.

The hole. `app.py` bounds at 16 KiB only the routes `access.public_body_paths` finds:
PUBLIC access and a body parameter. The agent router is marked AGENT_SIGNED as a whole,
so its routes keep the 1 MiB default, yet:

- `POST /v1/hosts/delegation` has no gate at all ("Open: the wallet's signature is the
  authentication"): FastAPI reads its `DelegationIn` body as JSON (`json.loads` plus
  validation, on the event loop) before anything can refuse the caller. Anyone, without
  any key, can send 1 MiB of JSON there; it is parsed on the loop and answered 422.
- `POST /v1/hosts/register` and `/v1/hosts/ip`: the gate parses and verifies the envelope
  on a thread, but any fresh sr25519 key makes a valid signature (nothing in the gate ties
  the address to a host or a provider), and then FastAPI parses the whole body *again*
  on the event loop (`body: SignedEnvelope`). The gate does not spend the nonce
  (`_SpendLater`), and a route that then refuses the payload (422) rolls its `_claim`
  back: one envelope, signed once, is replayed for the whole freshness window
  (`signature_max_skew`), each replay parsed on the loop again (the test sees three
  replays of one 300 KiB envelope parsed on the loop, each answered 422).

Cost: per request, the event loop of a replica is held for the parse of up to 1 MiB
(the commit's own measure: 96 ms for 1 MiB of JSON), stalling every other request of
that replica (log-ins, console pages, heartbeats awaiting their batch). It needs no
account, no token, for register/ip one signature made once, and only bandwidth:
~10 requests/s of 1 MiB (80 Mbit/s) keep a replica's loop busy all the time. The same
bodies on /v1/auth/login are refused at 16 KiB since this change; these are not.

Suggested fix: derive the small limit from "parsed before any check can refuse the
caller" rather than from the PUBLIC mark: bound /v1/hosts/delegation (its body is
< 1 KiB: message <= 300, signature <= 200), /v1/hosts/register and /v1/hosts/ip (a
registration is a few KiB) small as well; and stop FastAPI's second parse of a gated
envelope (declare it for the documentation only through `openapi_extra`, as the
heartbeat route does) so that the gate's thread is the only parser.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import starlette.requests
from fastapi.testclient import TestClient

from kumulus.core.signing import Domain, keypair_from_mnemonic, new_mnemonic, sign_envelope

ANONYMOUS_LIMIT = 16 << 10


class _LoopParses:
    """Stands in for starlette.requests' `json` module: records the size of every body
    Starlette's `Request.json()` parses while an event loop runs on the current thread
    (FastAPI's own body parsing), then parses it as before."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(json, name)

    def loads(self, body: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            asyncio.get_running_loop()
            self.sizes.append(len(body))
        except RuntimeError:
            pass
        return json.loads(body, *args, **kwargs)


@pytest.fixture
def loop_parses(monkeypatch: pytest.MonkeyPatch) -> Iterator[_LoopParses]:
    spy = _LoopParses()
    monkeypatch.setattr(starlette.requests, "json", spy)
    yield spy


def _padded(doc: dict[str, Any], size: int) -> bytes:
    doc = {**doc, "pad": [[0] * 8] * 1}
    rows = (size - len(json.dumps(doc))) // len(json.dumps([0] * 8) + ", ")
    doc["pad"] = [[0] * 8] * max(rows, 1)
    return json.dumps(doc).encode()


def test_an_anonymous_delegation_body_past_16_kib_is_refused_unparsed(
    backend: TestClient, loop_parses: _LoopParses
) -> None:
    body = _padded({"message": "x", "signature": "y"}, 200 << 10)
    resp = backend.post(
        "/v1/hosts/delegation", content=body, headers={"content-type": "application/json"}
    )
    # Nobody vouches for this caller: it should get what /v1/auth/login gets (413).
    assert resp.status_code == 413, (resp.status_code, resp.text[:200])
    assert not [n for n in loop_parses.sizes if n > ANONYMOUS_LIMIT], loop_parses.sizes


@pytest.mark.parametrize(
    ("path", "domain", "kind"),
    [
        ("/v1/hosts/register", Domain.HOST_REGISTRATION, "register"),
        ("/v1/hosts/ip", Domain.HOST_IP, "ip"),
    ],
)
def test_a_self_signed_envelope_replayed_is_not_parsed_again_on_the_loop(
    backend: TestClient, loop_parses: _LoopParses, path: str, domain: Domain, kind: str
) -> None:
    # Any key at all: nothing ties it to a provider or a host before the route runs.
    stranger = keypair_from_mnemonic(new_mnemonic())
    payload = {"kind": kind, "providerToken": secrets.token_urlsafe(16),
               "pad": [[0] * 8] * 12_000}  # fmt: skip
    envelope = json.dumps(sign_envelope(stranger, payload, domain=domain).model_dump()).encode()
    assert len(envelope) > 200 << 10
    answers = [
        backend.post(
            path, content=envelope, headers={"content-type": "application/json"}
        ).status_code
        for _ in range(3)  # one signature, replayed
    ]
    big_on_loop = [n for n in loop_parses.sizes if n > ANONYMOUS_LIMIT]
    assert not big_on_loop, (
        f"answers {answers}: {len(big_on_loop)} bodies of {big_on_loop[0]} bytes from a key "
        "nobody knows were parsed on the event loop"
    )
