"""A signer that behaves like the polkadot.js / Talisman browser extensions' signRaw."""

from __future__ import annotations

from typing import cast

from substrateinterface import Keypair


class ExtensionSigner:
    """Signs what signRaw signs: the data wrapped in `<Bytes>...</Bytes>`. Pass it where a
    Keypair signs (`as_keypair`) to get the signature an extension would have made."""

    def __init__(self, keypair: Keypair) -> None:
        self._keypair = keypair
        self.ss58_address = keypair.ss58_address

    def sign(self, data: bytes) -> bytes:
        return bytes(self._keypair.sign(b"<Bytes>" + data + b"</Bytes>"))

    def as_keypair(self) -> Keypair:
        return cast(Keypair, self)
