import pytest
from fastapi.testclient import TestClient
from substrateinterface import Keypair

from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.backend.conftest import Actor, link_wallet


@pytest.mark.parametrize("wrap", [False, True], ids=["raw", "bytes-wrapped"])
def test_wallet_links_by_signed_challenge(
    backend: TestClient, provider: Actor, wallet: Keypair, wrap: bool
) -> None:
    link_wallet(backend, provider, wallet, wrap=wrap)
    profile = backend.get("/v1/provider/profile", headers=provider.headers).json()
    assert profile["walletAddress"] == wallet.ss58_address


def _challenge(backend: TestClient, actor: Actor) -> dict[str, object]:
    resp = backend.post("/v1/provider/wallet/challenge", headers=actor.headers)
    assert resp.status_code == 201
    return dict(resp.json())


def test_signature_by_another_key_is_refused(
    backend: TestClient, provider: Actor, wallet: Keypair
) -> None:
    challenge = _challenge(backend, provider)
    intruder = keypair_from_mnemonic(new_mnemonic())
    resp = backend.post(
        "/v1/provider/wallet/link",
        headers=provider.headers,
        json={
            "challengeId": challenge["challengeId"],
            "address": wallet.ss58_address,
            "signature": "0x" + bytes(intruder.sign(str(challenge["message"]).encode())).hex(),
        },
    )
    assert resp.status_code == 422 and "bad signature" in resp.json()["detail"]
    assert (
        backend.get("/v1/provider/profile", headers=provider.headers).json()["walletAddress"]
        is None
    )


def test_challenge_is_single_use_and_owned(
    backend: TestClient, provider: Actor, other_provider: Actor, wallet: Keypair
) -> None:
    challenge = _challenge(backend, provider)
    body = {
        "challengeId": challenge["challengeId"],
        "address": wallet.ss58_address,
        "signature": "0x" + bytes(wallet.sign(str(challenge["message"]).encode())).hex(),
    }
    assert (
        backend.post(
            "/v1/provider/wallet/link", headers=other_provider.headers, json=body
        ).status_code
        == 404
    )
    assert (
        backend.post("/v1/provider/wallet/link", headers=provider.headers, json=body).status_code
        == 200
    )
    again = backend.post("/v1/provider/wallet/link", headers=provider.headers, json=body)
    assert again.status_code == 409


def test_one_wallet_one_provider(
    backend: TestClient, provider: Actor, other_provider: Actor, wallet: Keypair
) -> None:
    link_wallet(backend, provider, wallet)
    challenge = _challenge(backend, other_provider)
    resp = backend.post(
        "/v1/provider/wallet/link",
        headers=other_provider.headers,
        json={
            "challengeId": challenge["challengeId"],
            "address": wallet.ss58_address,
            "signature": "0x" + bytes(wallet.sign(str(challenge["message"]).encode())).hex(),
        },
    )
    assert resp.status_code == 409 and "another account" in resp.json()["detail"]


def test_garbage_address_and_signature(backend: TestClient, provider: Actor) -> None:
    challenge = _challenge(backend, provider)
    for address, signature in [("not-an-address", "0x00"), ("5" * 48, "0x" + "00" * 64)]:
        resp = backend.post(
            "/v1/provider/wallet/link",
            headers=provider.headers,
            json={
                "challengeId": challenge["challengeId"],
                "address": address,
                "signature": signature,
            },
        )
        assert resp.status_code == 422
