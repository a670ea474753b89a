"""Each kind of signed message verifies only as itself, and only machine-made messages insist
on their exact bytes: a wallet extension's `<Bytes>`-wrapped signature is refused for
envelopes and signed requests, accepted for wallet-link (and delegation) texts."""

from __future__ import annotations

import pytest
from substrateinterface import Keypair

from kumulus.core.signing import (
    ENVELOPE_DOMAINS,
    Domain,
    NonceCache,
    SignatureError,
    envelope_message,
    keypair_from_mnemonic,
    new_mnemonic,
    sign_envelope,
    sign_request,
    verify_delegation,
    verify_envelope,
    verify_request,
    verify_wallet_link,
    wallet_text,
)
from tests.wallet_extension import ExtensionSigner

PAYLOAD = {"kind": "health", "hostId": "0123456789abcdef", "publicIp": "198.51.100.7"}


@pytest.fixture(scope="module")
def wallet() -> Keypair:
    return keypair_from_mnemonic(new_mnemonic())


def _wrapping(wallet: Keypair) -> Keypair:
    return ExtensionSigner(wallet).as_keypair()


@pytest.mark.parametrize("domain", sorted(ENVELOPE_DOMAINS))
def test_wrapped_envelope_signature_is_refused(wallet: Keypair, domain: Domain) -> None:
    wrapped = sign_envelope(_wrapping(wallet), PAYLOAD, domain=domain)
    # The signature is genuine: substrate-interface's lenient verify takes it for the raw
    # envelope bytes, which is what let a wallet-signed text pass as an envelope.
    message = b"<Bytes>" + envelope_message(wrapped, domain) + b"</Bytes>"
    assert wallet.verify(message, wrapped.signature)
    with pytest.raises(SignatureError, match="bad signature"):
        verify_envelope(wrapped, NonceCache(), domain=domain)
    exact = sign_envelope(wallet, PAYLOAD, domain=domain)
    assert verify_envelope(exact, NonceCache(), domain=domain) == PAYLOAD


@pytest.mark.parametrize("signed_as", sorted(ENVELOPE_DOMAINS))
@pytest.mark.parametrize("verified_as", sorted(ENVELOPE_DOMAINS))
def test_envelope_of_one_kind_is_not_another(
    wallet: Keypair, signed_as: Domain, verified_as: Domain
) -> None:
    envelope = sign_envelope(wallet, PAYLOAD, domain=signed_as)
    if signed_as == verified_as:
        assert verify_envelope(envelope, NonceCache(), domain=verified_as) == PAYLOAD
    else:
        with pytest.raises(SignatureError, match="bad signature"):
            verify_envelope(envelope, NonceCache(), domain=verified_as)


def _verify_request(headers: dict[str, str], signer: Keypair) -> None:
    verify_request(
        headers,
        "POST",
        "/v1/vms",
        b"{}",
        NonceCache(),
        expected_address=signer.ss58_address,
        audience="0123456789abcdef",
    )


def test_wrapped_request_signature_is_refused(wallet: Keypair) -> None:
    wrapped = sign_request(_wrapping(wallet), "POST", "/v1/vms", b"{}", audience="0123456789abcdef")
    with pytest.raises(SignatureError, match="bad signature"):
        _verify_request(wrapped, wallet)
    exact = sign_request(wallet, "POST", "/v1/vms", b"{}", audience="0123456789abcdef")
    _verify_request(exact, wallet)


@pytest.mark.parametrize("wrap", [False, True], ids=["raw", "bytes-wrapped"])
def test_wallet_link_accepts_raw_and_wrapped(wallet: Keypair, wrap: bool) -> None:
    message = wallet_text(Domain.WALLET_LINK, "link this wallet to Kumulus account p@example.com")
    signer = _wrapping(wallet) if wrap else wallet
    signature = "0x" + bytes(signer.sign(message.encode())).hex()
    verify_wallet_link(wallet.ss58_address, message, signature)
    # The same signature does not make a delegation, nor link another text.
    with pytest.raises(SignatureError):
        verify_delegation(wallet.ss58_address, message, signature)
    with pytest.raises(SignatureError, match="bad signature"):
        verify_wallet_link(wallet.ss58_address, message + " (and more)", signature)


def test_delegation_accepts_wrapped_but_not_a_wallet_link(wallet: Keypair) -> None:
    text = "host 0123456789abcdef may sign for this wallet until 2027-01-01T00:00:00Z"
    delegation = wallet_text(Domain.DELEGATION, text)
    signature = "0x" + bytes(_wrapping(wallet).sign(delegation.encode())).hex()
    verify_delegation(wallet.ss58_address, delegation, signature)
    # The wallet's signature of the same text as a wallet link does not delegate.
    as_link = wallet_text(Domain.WALLET_LINK, text)
    link_signature = "0x" + bytes(_wrapping(wallet).sign(as_link.encode())).hex()
    with pytest.raises(SignatureError, match="bad signature"):
        verify_delegation(wallet.ss58_address, delegation, link_signature)


def test_wallet_text_signature_is_never_an_envelope_or_a_request(wallet: Keypair) -> None:
    """A person signing in a wallet exactly the bytes of a heartbeat (the extension wraps
    them) does not produce a heartbeat, and text without its tag links nothing."""
    honest = sign_envelope(wallet, PAYLOAD, domain=Domain.HEARTBEAT)
    extension = ExtensionSigner(wallet)
    signature = "0x" + extension.sign(envelope_message(honest, Domain.HEARTBEAT)).hex()
    tricked = honest.model_copy(update={"signature": signature})
    with pytest.raises(SignatureError, match="bad signature"):
        verify_envelope(tricked, NonceCache(), domain=Domain.HEARTBEAT)
    untagged = "link this wallet to Kumulus account p@example.com"
    signature = "0x" + bytes(wallet.sign(untagged.encode())).hex()
    with pytest.raises(SignatureError, match="not a kumulus/wallet-link/v1 message"):
        verify_wallet_link(wallet.ss58_address, untagged, signature)
