"""A provider's own inventory proves nothing: a host declaring more than the platform's caps
(or nothing at all) is refused with a 422 naming the field, and the one-time token stays
usable for a corrected registration."""

import pytest
from fastapi.testclient import TestClient
from substrateinterface import Keypair

from kumulus.config import BackendSettings
from kumulus.core.signing import Domain, sign_envelope
from tests.backend.conftest import Actor, link_wallet, register_payload

TIB = 1 << 40


@pytest.mark.parametrize(
    ("capacity", "field", "says"),
    [
        ({"cpu": 1e9, "memory": 8 << 30, "disk": 100 << 30}, "cpu", "at most 512 vCPU"),
        ({"cpu": 4, "memory": 5 * TIB, "disk": 100 << 30}, "memory", "at most 4t"),
        ({"cpu": 4, "memory": 8 << 30, "disk": 65 * TIB}, "disk", "at most 64t"),
        ({"cpu": 0, "memory": 8 << 30, "disk": 100 << 30}, "cpu", "more than 0"),
        ({"cpu": 4, "memory": -1, "disk": 100 << 30}, "memory", "more than 0"),
    ],
)
def test_capacity_past_the_caps_is_422(
    backend: TestClient,
    provider: Actor,
    wallet: Keypair,
    host_key: Keypair,
    capacity: dict[str, float],
    field: str,
    says: str,
) -> None:
    link_wallet(backend, provider, wallet)
    token = backend.post("/v1/provider/host-tokens", headers=provider.headers).json()["token"]
    bad = sign_envelope(
        host_key, register_payload(token, capacity=capacity), domain=Domain.HOST_REGISTRATION
    )
    resp = backend.post("/v1/hosts/register", json=bad.model_dump())
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert says in body["detail"]
    assert {"loc": ["body", "capacity", field], "msg": body["fields"][0]["msg"]} in body["fields"]
    assert backend.get("/v1/provider/hosts", headers=provider.headers).json()["items"] == []
    good = sign_envelope(host_key, register_payload(token), domain=Domain.HOST_REGISTRATION)
    assert backend.post("/v1/hosts/register", json=good.model_dump()).status_code == 201


def test_the_caps_are_settings() -> None:
    settings = BackendSettings(max_host_cpu=1024, max_host_memory="8t", max_host_disk="128t")
    assert settings.max_host_memory_bytes == 8 * TIB
    assert settings.max_host_disk_bytes == 128 * TIB
    with pytest.raises(ValueError, match="max_host_memory"):
        BackendSettings(max_host_memory="lots")
