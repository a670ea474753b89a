"""Every answer carries an X-Request-ID: the caller's when valid, a new one otherwise
(never an echo of arbitrary text); log records carry it, in JSON with
KUMULUS_LOG_FORMAT=json; and a call to an agent made for a request sends the same id."""

from __future__ import annotations

import io
import json
import logging

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from kumulus.core import logs, request_ids
from kumulus.core.request_ids import RequestIdFilter, RequestIdMiddleware

log = logging.getLogger("tests.request_ids")


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/here")
    def here() -> dict[str, str | None]:
        log.info("handling")
        return {"seen": request_ids.current()}

    app.add_middleware(RequestIdMiddleware)
    return app


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("abc-123.X_y", True),
        ("has space", False),
        ("x" * 65, False),
        ("ok\r\nSet-Cookie: a", False),
    ],
)
def test_valid_ids_are_kept_others_replaced(sent: str, kept: bool) -> None:
    resp = TestClient(_app()).get("/here", headers={"X-Request-ID": sent})
    answered = resp.headers["X-Request-ID"]
    assert resp.json()["seen"] == answered
    assert (answered == sent) is kept
    assert request_ids.valid(answered)


def test_absent_id_is_generated_and_unique() -> None:
    client = TestClient(_app())
    ids = {client.get("/here").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3 and all(request_ids.valid(i) for i in ids)


def test_json_logs_carry_the_request_id() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.formatter("json"))
    handler.addFilter(RequestIdFilter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        TestClient(_app()).get("/here", headers={"X-Request-ID": "trace-42"})
    finally:
        log.removeHandler(handler)
    record = json.loads(out.getvalue().strip().splitlines()[-1])
    assert record["request_id"] == "trace-42"
    assert record["message"] == "handling"
    assert record["level"] == "INFO"


def test_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="KUMULUS_LOG_FORMAT"):
        logs.formatter("xml")


def test_agent_calls_send_the_bound_id() -> None:
    from substrateinterface import Keypair

    from kumulus.client import AgentClient, ApiError, CallPolicy

    got: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        got.append(request.headers.get("X-Request-ID"))
        return httpx.Response(503, json={"detail": "away", "code": "unavailable"})

    key = Keypair.create_from_uri("//Alice")
    client = AgentClient(
        "http://agent.test:8000",
        "h1",
        key,
        key.ss58_address,
        CallPolicy(allow_private=True),  # agent.test resolves nowhere: nothing is dialled
        transport=httpx.MockTransport(answer),
    )
    with request_ids.bound("req-77"), pytest.raises(ApiError):  # unsigned answer: refused
        client.get_vm("abc")
    assert got == ["req-77"]
