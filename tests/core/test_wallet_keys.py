from pathlib import Path

import pytest

from kumulus.core.signing import (
    SecretFileError,
    keypair_from_mnemonic,
    load_keypair,
    read_secret_file,
    write_secret_file,
)

# The Substrate development phrase; polkadot.js/Talisman show this sr25519 address for it.
DEV_PHRASE = "bottom drive obey lake curtain smoke basket hold race lonely fit walk"
DEV_ADDRESS = "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV"


def test_mnemonic_gives_the_wallets_sr25519_address() -> None:
    assert keypair_from_mnemonic(DEV_PHRASE).ss58_address == DEV_ADDRESS


def test_secret_file_is_0600_and_loads(tmp_path: Path) -> None:
    path = tmp_path / "wallet"
    write_secret_file(path, DEV_PHRASE)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_keypair(path).ss58_address == DEV_ADDRESS


def test_world_readable_secret_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "wallet"
    path.write_text(DEV_PHRASE)
    path.chmod(0o644)
    with pytest.raises(SecretFileError, match="chmod 600"):
        read_secret_file(path)


def test_invalid_mnemonic_error_does_not_echo_it() -> None:
    bad = "correct horse battery staple secretword"
    with pytest.raises(SecretFileError) as info:
        keypair_from_mnemonic(bad)
    assert "secretword" not in str(info.value)
