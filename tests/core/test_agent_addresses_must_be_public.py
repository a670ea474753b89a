"""A provider chooses its agent's `apiUrl`; the backend calls only public addresses there,
checked against the address it dials: the name is resolved once per connection, every
address it resolves to must be public, and the connection goes to the address checked
(with the name kept in the Host header), so a DNS answer cannot change in between. Private
agents are allowed only when the operator says so (`kumulus up`, tests)."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from kumulus.client import AgentClient, ApiError, CallPolicy
from kumulus.config import BackendSettings
from kumulus.core.public_dial import not_public
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.signed_agent import signed_by

KEY = keypair_from_mnemonic(new_mnemonic())
HOST_KEY = keypair_from_mnemonic(new_mnemonic())
VM = {"vmId": "v1", "logs": "hello"}

NOT_PUBLIC = [
    "127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
    "100.64.0.1", "0.0.0.0", "224.0.0.1", "239.255.255.250", "255.255.255.255", "192.0.2.1",
    "::1", "::", "fe80::1", "fc00::1", "fd12::1", "ff02::1", "::ffff:127.0.0.1",
    "::ffff:169.254.169.254", "2002:7f00:1::", "64:ff9b::a9fe:a9fe", "2001:db8::1",
]  # fmt: skip
PUBLIC = ["8.8.8.8", "93.184.216.34", "2606:4700::1111", "2a00:1450:4001::1"]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_non_public_addresses_are_named(address: str) -> None:
    assert not_public(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert not_public(ipaddress.ip_address(address)) is None


class Recorder:
    """An inner transport that records what would have been dialled (nothing is)."""

    def __init__(self) -> None:
        self.dialled: list[tuple[str, str]] = []
        self.transport = signed_by(HOST_KEY, self._answer)

    def _answer(self, request: httpx.Request) -> httpx.Response:
        self.dialled.append((request.url.host, request.headers["host"]))
        return httpx.Response(200, json=VM)


def _client(url: str, recorder: Recorder, answers: list[str], **kw: bool) -> AgentClient:
    async def resolver(host: str, port: int) -> list[str]:
        return answers

    return AgentClient(url, "h", KEY, HOST_KEY.ss58_address, CallPolicy(**kw),
                       transport=recorder.transport, resolver=resolver)  # fmt: skip


@pytest.mark.parametrize(
    ("url", "answers"),
    [
        ("http://169.254.169.254:80", []),
        ("http://[::ffff:127.0.0.1]:8000", []),
        ("http://agent.example.com:8000", ["127.0.0.1"]),
        ("https://agent.example.com", ["93.184.216.34", "10.0.0.5"]),  # one bad is enough
        ("http://agent.example.com:8000", ["fe80::1%eth0"]),
    ],
)
def test_a_private_address_is_refused_before_anything_is_dialled(
    url: str, answers: list[str]
) -> None:
    recorder = Recorder()
    with pytest.raises(ApiError) as caught:
        _client(url, recorder, answers).logs("v1")
    assert caught.value.code == "private_address" and caught.value.status is None
    assert recorder.dialled == []


def test_the_address_checked_is_the_address_dialled() -> None:
    recorder = Recorder()
    client = _client("http://agent.example.com:8000", recorder, ["93.184.216.34"])
    assert client.logs("v1") == "hello"
    assert recorder.dialled == [("93.184.216.34", "agent.example.com:8000")]


def test_every_call_resolves_again() -> None:
    recorder = Recorder()
    answers = ["93.184.216.34"]
    client = _client("http://agent.example.com:8000", recorder, answers)
    client.logs("v1")
    answers[0] = "127.0.0.1"  # the name now points inside: rebinding
    with pytest.raises(ApiError) as caught:
        client.logs("v1")
    assert caught.value.code == "private_address" and len(recorder.dialled) == 1


def test_private_agents_when_allowed() -> None:
    recorder = Recorder()
    client = _client("http://127.0.0.1:8000", recorder, [], allow_private=True)
    assert client.logs("v1") == "hello"


def test_a_backend_allows_none_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUMULUS_BACKEND_ALLOW_PRIVATE_AGENTS", raising=False)
    assert BackendSettings().allow_private_agents is False
