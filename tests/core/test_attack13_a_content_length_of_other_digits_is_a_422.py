"""`Content-Length` must be ASCII digits: '²' (Latin-1 0xB2) is a digit to `str.isdigit`
but not to `int`, and crashed the body limit (a 500) under a server that does not check
the header itself."""

from __future__ import annotations

import json

import anyio

from kumulus.core.body_limit import BodyLimit


def test_a_superscript_content_length_is_refused_with_422() -> None:
    reached: list[bool] = []

    async def app(scope: object, receive: object, send: object) -> None:
        reached.append(True)

    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/vms",
        "headers": [(b"content-length", "\u00b2".encode("latin-1"))],
    }
    anyio.run(BodyLimit(app, default=1024), scope, receive, send)  # type: ignore[arg-type]
    assert not reached
    assert sent[0]["status"] == 422
    assert "Content-Length" in json.loads(sent[1]["body"])["detail"]  # type: ignore[arg-type]
