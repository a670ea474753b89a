"""The caller is authenticated before the body is parsed, on both apps: an anonymous (or
wrongly authenticated) request is a 401 whatever its body (malformed JSON included), and
only an authenticated caller's body is parsed (then 422 when it is malformed). Signature
checks run on worker threads, never on the event loop."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from kumulus.agent import auth as agent_auth
from kumulus.backend.api.routes import agents as agent_routes
from tests.backend.conftest import Actor

GARBAGE = [b"{not json", b"[" * 5000, b"\xff\xfe", b'{"username": 1}']
JSON = {"Content-Type": "application/json"}


ROUTES = [("POST", "/v1/vms"), ("POST", "/v1/ssh-keys"), ("PUT", "/v1/provider/profile")]


def test_anonymous_is_401_whatever_the_body(backend: TestClient) -> None:
    for method, path in ROUTES:
        for body in GARBAGE:
            for headers in (JSON, {**JSON, "Authorization": "Bearer not-a-token"}):
                resp = backend.request(method, path, content=body, headers=headers)
                assert resp.status_code == 401, (path, body, resp.text)
                assert resp.json()["code"] == "unauthorized"


def test_an_authenticated_callers_malformed_body_is_422(
    backend: TestClient, developer: Actor
) -> None:
    resp = backend.post("/v1/ssh-keys", content=b"{not json", headers={**JSON, **developer.headers})
    assert resp.status_code == 422, resp.text


def test_agent_routes_refuse_what_is_not_a_signed_envelope(backend: TestClient) -> None:
    for path in ("/v1/hosts/heartbeat", "/v1/hosts/register", "/v1/hosts/ip"):
        for body in GARBAGE:
            resp = backend.post(path, content=body, headers=JSON)
            assert resp.status_code == 401, (path, body, resp.text)
            assert resp.json()["code"] == "bad_signature"


def test_the_agent_too(fake_agent: TestClient) -> None:
    anonymous = {**JSON, "Authorization": ""}
    signed = {**anonymous, "X-Kumulus-Signature": "0x00"}
    for body in GARBAGE:
        for path, headers in (("/v1/vms", anonymous), ("/create-vm", anonymous),
                              ("/v1/vms", signed)):  # fmt: skip
            assert fake_agent.post(path, content=body, headers=headers).status_code == 401
    # The admin token's body is parsed: malformed is 422.
    assert fake_agent.post("/v1/vms", content=b"{not json", headers=JSON).status_code == 422


def test_signatures_are_checked_off_the_event_loop(
    backend: TestClient, fake_agent: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []

    def recording(real):  # type: ignore[no-untyped-def]
        def run(*args, **kwargs):  # type: ignore[no-untyped-def]
            threads.append(threading.current_thread().name)
            return real(*args, **kwargs)

        return run

    monkeypatch.setattr(agent_auth, "read_pinned_backend", recording(lambda _: "5Fake"))
    monkeypatch.setattr(agent_auth, "verify_request", recording(agent_auth.verify_request))
    monkeypatch.setattr(
        agent_routes, "verify_envelope_message", recording(agent_routes.verify_envelope_message)
    )
    fake_agent.post(
        "/v1/vms",
        content=b"{}",
        headers={**JSON, "Authorization": "", "X-Kumulus-Signature": "0x00",
                 "X-Kumulus-Address": "5Fake"},
    )  # fmt: skip
    envelope = {"address": "5F", "timestamp": 1.0, "nonce": "0" * 32, "payload": {},
                "signature": "0x00"}  # fmt: skip
    assert backend.post("/v1/hosts/heartbeat", json=envelope).status_code == 401
    assert len(threads) == 3, threads
    loop_threads = {backend.portal.call(threading.current_thread).name,  # type: ignore[union-attr]
                    fake_agent.portal.call(threading.current_thread).name}  # type: ignore[union-attr]  # fmt: skip
    assert not loop_threads & set(threads), (threads, loop_threads)


def test_agent_envelopes_are_read_off_the_event_loop(
    backend: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An anonymous body up to the limit (64 KiB for heartbeats, 1 MiB for the others) of
    # small nested lists takes tens of milliseconds to parse: on the event loop, a few
    # such requests a second would stall every other request of the process.
    threads: list[str] = []
    real = agent_routes._read_envelope

    def recording(body: bytes):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread().name)
        return real(body)

    monkeypatch.setattr(agent_routes, "_read_envelope", recording)
    nested = b'{"payload": [' + b"[[1],[2]]," * 3000 + b"[]]}"
    for path in ("/v1/hosts/heartbeat", "/v1/hosts/register", "/v1/hosts/ip"):
        resp = backend.post(path, content=nested, headers=JSON)
        assert resp.status_code == 401 and resp.json()["code"] == "bad_signature", resp.text
    assert len(threads) == 3, threads
    loop_thread = backend.portal.call(threading.current_thread).name  # type: ignore[union-attr]
    assert loop_thread not in threads, (threads, loop_thread)
