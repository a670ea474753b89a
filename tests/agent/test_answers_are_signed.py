"""The real agent app signs its answers to the backend's verified requests (errors too),
and those only: a request whose signature fails, or that no route takes, gets no signed
answer a man in the middle could pass off as the answer to a real request."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from substrateinterface import Keypair

from kumulus.agent.app import create_app
from kumulus.client import AgentClient, ApiError, CallPolicy
from kumulus.config import AgentSettings
from kumulus.core.signing import (
    HDR_ANSWER_SIGNATURE,
    HDR_NONCE,
    keypair_from_mnemonic,
    new_mnemonic,
    sign_request,
    verify_answer,
)
from tests.fakes import FakeRuntime

HOST_KEY = keypair_from_mnemonic(new_mnemonic())
BACKEND_KEY = keypair_from_mnemonic(new_mnemonic())
VM = {"username": "alice", "sshKey": "", "cpu": 1, "memory": "1g", "disk": "4g"}


@pytest.fixture
def agent(
    agent_settings: AgentSettings, fake_runtime: FakeRuntime, ssh_keypair: tuple[object, str]
) -> Iterator[FastAPI]:
    VM["sshKey"] = ssh_keypair[1]
    app = create_app(agent_settings, fake_runtime, keypair=HOST_KEY, collect_stats=False)
    agent_settings.backend_key_path.write_text(BACKEND_KEY.ss58_address)
    with TestClient(app):  # runs the lifespan
        yield app


def _client(app: FastAPI, expected: Keypair) -> AgentClient:
    return AgentClient(
        "http://agent",
        app.state.auth.agent_id,
        BACKEND_KEY,
        expected.ss58_address,
        transport=httpx.ASGITransport(app=app),
        policy=CallPolicy(allow_private=True),  # "agent": no DNS name; the app is in process
    )


def test_the_backend_reads_the_agents_signed_answers(agent: FastAPI) -> None:
    client = _client(agent, HOST_KEY)
    created = client.create_vm(dict(VM), idempotency_key="k1")
    assert client.get_vm(created.vm_id).vm_id == created.vm_id
    assert client.stop_vm(created.vm_id).state == "exited"
    client.delete_vm(created.vm_id)
    with pytest.raises(ApiError) as caught:  # a signed refusal is a refusal
        client.get_vm(created.vm_id)
    assert (caught.value.status, caught.value.code) == (404, "not_found")


def test_answers_signed_by_another_key_are_refused(agent: FastAPI) -> None:
    with pytest.raises(ApiError) as caught:
        _client(agent, keypair_from_mnemonic(new_mnemonic())).create_vm(dict(VM), "k2")
    assert (caught.value.status, caught.value.code) == (None, "bad_answer_signature")


def _raw(agent: FastAPI, method: str, path: str, signer: Keypair) -> httpx.Response:
    headers = sign_request(signer, method, path, b"", audience=agent.state.auth.agent_id)
    with TestClient(agent) as http:
        answer: httpx.Response = http.request(method, path, headers=headers)
        return answer


def test_only_verified_requests_get_signed_answers(agent: FastAPI) -> None:
    good = _raw(agent, "GET", "/v1/vms", BACKEND_KEY)
    assert good.status_code == 200
    verify_answer(
        HOST_KEY.ss58_address,
        200,
        good.content,
        good.request.headers[HDR_NONCE],
        good.headers[HDR_ANSWER_SIGNATURE],
    )
    stranger = keypair_from_mnemonic(new_mnemonic())
    forged = _raw(agent, "DELETE", "/v1/vms/0123456789abcdef", stranger)
    assert forged.status_code == 401 and HDR_ANSWER_SIGNATURE not in forged.headers
    nowhere = _raw(agent, "DELETE", "/no/such/route", BACKEND_KEY)
    assert nowhere.status_code in (404, 405) and HDR_ANSWER_SIGNATURE not in nowhere.headers
