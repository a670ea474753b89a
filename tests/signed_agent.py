"""An agent's answers as the backend expects them: signed by the host's key over status,
body and the request's nonce, for tests that answer through httpx.MockTransport."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from substrateinterface import Keypair

from kumulus.core.signing import HDR_ANSWER_SIGNATURE, HDR_NONCE, sign_answer

Handler = Callable[[httpx.Request], httpx.Response]


def signed_by(host_key: Keypair, handler: Handler) -> httpx.MockTransport:
    """A transport answering with `handler`, each answer signed by `host_key`."""

    def answer(request: httpx.Request) -> httpx.Response:
        resp = handler(request)
        body = resp.read()
        signature = sign_answer(host_key, resp.status_code, body, request.headers[HDR_NONCE])
        return httpx.Response(
            resp.status_code,
            content=body,
            headers={**resp.headers, HDR_ANSWER_SIGNATURE: signature},
        )

    return httpx.MockTransport(answer)
