import pytest

from kumulus.core.signing import (
    NonceCache,
    SignatureError,
    keypair_from_mnemonic,
    new_mnemonic,
    sign_request,
    verify_request,
)


def test_signed_request_roundtrip_replay_and_tamper() -> None:
    kp = keypair_from_mnemonic(new_mnemonic())
    nonces = NonceCache()
    body = b'{"username":"dev"}'
    headers = sign_request(kp, "POST", "/v1/vms", body, audience="host-a")
    verify_request(
        headers,
        "POST",
        "/v1/vms",
        body,
        nonces,
        expected_address=kp.ss58_address,
        audience="host-a",
    )
    with pytest.raises(SignatureError, match="replayed"):
        verify_request(
            headers,
            "POST",
            "/v1/vms",
            body,
            nonces,
            expected_address=kp.ss58_address,
            audience="host-a",
        )
    fresh = sign_request(kp, "POST", "/v1/vms", body, audience="host-a")
    for method, path, data in [
        ("DELETE", "/v1/vms", body),
        ("POST", "/v1/vms/x", body),
        ("POST", "/v1/vms", b'{"username":"root"}'),
    ]:
        with pytest.raises(SignatureError, match="bad signature"):
            verify_request(
                fresh,
                method,
                path,
                data,
                NonceCache(),
                expected_address=kp.ss58_address,
                audience="host-a",
            )


def test_request_from_unpinned_key_is_refused() -> None:
    kp, other = (keypair_from_mnemonic(new_mnemonic()) for _ in range(2))
    headers = sign_request(other, "GET", "/v1/vms", b"", audience="host-a")
    with pytest.raises(SignatureError, match="does not trust"):
        verify_request(
            headers,
            "GET",
            "/v1/vms",
            b"",
            NonceCache(),
            expected_address=kp.ss58_address,
            audience="host-a",
        )


def test_request_for_another_audience_or_nan_time_is_refused() -> None:
    kp = keypair_from_mnemonic(new_mnemonic())
    headers = sign_request(kp, "GET", "/v1/vms", b"", audience="host-a")
    with pytest.raises(SignatureError, match="another agent"):
        verify_request(
            headers,
            "GET",
            "/v1/vms",
            b"",
            NonceCache(),
            expected_address=kp.ss58_address,
            audience="host-b",
        )
    headers["X-Kumulus-Timestamp"] = "nan"
    with pytest.raises(SignatureError, match="stale"):
        verify_request(
            headers,
            "GET",
            "/v1/vms",
            b"",
            NonceCache(),
            expected_address=kp.ss58_address,
            audience="host-a",
        )
