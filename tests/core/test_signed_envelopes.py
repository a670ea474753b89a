import pytest

from kumulus.core.signing import (
    Domain,
    NonceCache,
    SignatureError,
    SignedEnvelope,
    keypair_from_mnemonic,
    new_mnemonic,
    sign_envelope,
    verify_envelope,
)


@pytest.fixture(scope="module")
def keypair():  # type: ignore[no-untyped-def]
    return keypair_from_mnemonic(new_mnemonic())


def test_valid_envelope_verifies_once(keypair) -> None:  # type: ignore[no-untyped-def]
    nonces = NonceCache()
    env = sign_envelope(keypair, {"cpu": 12.5, "vms": [1, 2]}, domain=Domain.HEARTBEAT)
    payload = verify_envelope(
        env, nonces, expected_address=keypair.ss58_address, domain=Domain.HEARTBEAT
    )
    assert payload == {"cpu": 12.5, "vms": [1, 2]}
    with pytest.raises(SignatureError, match="replayed"):
        verify_envelope(env, nonces, domain=Domain.HEARTBEAT)


def test_envelope_survives_json_round_trip(keypair) -> None:  # type: ignore[no-untyped-def]
    env = sign_envelope(keypair, {"load": [0.5, 0.25], "name": "host-1"}, domain=Domain.HEARTBEAT)
    again = SignedEnvelope.model_validate_json(env.model_dump_json())
    assert verify_envelope(again, NonceCache(), domain=Domain.HEARTBEAT)["name"] == "host-1"


@pytest.mark.parametrize(
    "change",
    [
        {"payload": {"cpu": 99.0}},
        {"timestamp": None},  # replaced below by a shifted timestamp
        {"nonce": "ab" * 16},
    ],
)
def test_tampered_envelope_is_refused(keypair, change) -> None:  # type: ignore[no-untyped-def]
    env = sign_envelope(keypair, {"cpu": 1.0}, domain=Domain.HEARTBEAT)
    data = env.model_dump()
    data.update(change)
    if data["timestamp"] is None:
        data["timestamp"] = env.timestamp + 1
    with pytest.raises(SignatureError, match="bad signature"):
        verify_envelope(SignedEnvelope(**data), NonceCache(), domain=Domain.HEARTBEAT)


def test_other_signer_claiming_the_address_is_refused(keypair) -> None:  # type: ignore[no-untyped-def]
    other = keypair_from_mnemonic(new_mnemonic())
    env = sign_envelope(other, {"cpu": 1.0}, domain=Domain.HEARTBEAT)
    forged = SignedEnvelope(**{**env.model_dump(), "address": keypair.ss58_address})
    with pytest.raises(SignatureError, match="bad signature"):
        verify_envelope(forged, NonceCache(), domain=Domain.HEARTBEAT)
    with pytest.raises(SignatureError, match="unexpected address"):
        verify_envelope(
            env, NonceCache(), expected_address=keypair.ss58_address, domain=Domain.HEARTBEAT
        )


def test_stale_and_future_envelopes_are_refused(keypair) -> None:  # type: ignore[no-untyped-def]
    old = sign_envelope(keypair, {"x": 1}, now=1_000_000.0, domain=Domain.HEARTBEAT)
    with pytest.raises(SignatureError, match="stale"):
        verify_envelope(old, NonceCache(), now=1_000_000.0 + 61, domain=Domain.HEARTBEAT)
    with pytest.raises(SignatureError, match="stale"):
        verify_envelope(old, NonceCache(), now=1_000_000.0 - 61, domain=Domain.HEARTBEAT)
    assert verify_envelope(old, NonceCache(), now=1_000_000.0 + 30, domain=Domain.HEARTBEAT) == {
        "x": 1
    }


def test_failed_verification_does_not_burn_the_nonce(keypair) -> None:  # type: ignore[no-untyped-def]
    nonces = NonceCache()
    env = sign_envelope(keypair, {"x": 1}, domain=Domain.HEARTBEAT)
    bad = SignedEnvelope(**{**env.model_dump(), "signature": "0x" + "00" * 64})
    with pytest.raises(SignatureError):
        verify_envelope(bad, nonces, domain=Domain.HEARTBEAT)
    assert verify_envelope(env, nonces, domain=Domain.HEARTBEAT) == {"x": 1}


def test_nan_timestamp_or_payload_is_refused_not_crashing(keypair) -> None:  # type: ignore[no-untyped-def]
    env = sign_envelope(keypair, {"x": 1}, domain=Domain.HEARTBEAT)
    with pytest.raises(SignatureError):
        verify_envelope(
            SignedEnvelope(**{**env.model_dump(), "timestamp": float("nan")}),
            NonceCache(),
            domain=Domain.HEARTBEAT,
        )
    with pytest.raises(SignatureError, match="canonical"):
        verify_envelope(
            SignedEnvelope(**{**env.model_dump(), "payload": {"x": float("nan")}}),
            NonceCache(),
            domain=Domain.HEARTBEAT,
        )
