"""Every answer to a backend call carries the agent's signature (`X-Kumulus-Answer-Signature`)
over its status code, the SHA-256 of its body and the nonce of the request it answers, so
nobody on the path can forge a VM's state, its SSH port or a 404 to a delete.

Only answers to requests whose signature verified are signed (auth.py marks them in the
ASGI scope): otherwise anyone could send a made-up request carrying a nonce they saw on the
wire (say, to an unknown route) and get a signed 404 bound to that nonce. Answers are
buffered whole before they are signed; the agent streams nothing to the backend (logs are
one bounded JSON body), so a streamed answer would simply be buffered too.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from substrateinterface import Keypair

from kumulus.core.signing import HDR_ANSWER_SIGNATURE, sign_answer

# Set by auth (its gate) once a backend request's signature verified: its nonce.
SCOPE_NONCE = "kumulus.answer_nonce"


def mark_signed_request(scope: MutableMapping[str, Any], nonce: str) -> None:
    """Ask for this request's answer to be signed, bound to `nonce` (a verified request's)."""
    scope[SCOPE_NONCE] = nonce


class SignedAnswers:
    """ASGI middleware: signs the answer of every verified backend request with the key
    `signer()` returns at answer time (None: the answer goes unsigned, and the backend
    refuses it). Other answers (admin token, /healthz) pass through untouched."""

    def __init__(self, app: ASGIApp, signer: Callable[[], Keypair | None]) -> None:
        self.app = app
        self.signer = signer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def buffered(message: Message) -> None:
            nonlocal start
            nonce = scope.get(SCOPE_NONCE)
            if nonce is None:
                await send(message)
                return
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            headers = [
                (k, v)
                for k, v in start.get("headers", [])
                if k.lower() not in (b"content-length", HDR_ANSWER_SIGNATURE.lower().encode())
            ]
            headers.append((b"content-length", str(len(body)).encode()))
            keypair = self.signer()
            if keypair is not None:
                signature = sign_answer(keypair, int(start["status"]), body, str(nonce))
                headers.append((HDR_ANSWER_SIGNATURE.lower().encode(), signature.encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, buffered)
