"""`kumulus wallet sign` makes a signature the backend accepts for wallet linking."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from kumulus.cli import app
from kumulus.core.delegation import default_expiry, delegation_text
from kumulus.core.signing import (
    Domain,
    verify_delegation,
    verify_wallet_link,
    wallet_text,
    write_secret_file,
)

PHRASE = "bottom drive obey lake curtain smoke basket hold race lonely fit walk"
ADDRESS = "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV"


def test_sign_prints_a_verifiable_signature(tmp_path: Path) -> None:
    mnemonic = tmp_path / "mnemonic"
    write_secret_file(mnemonic, PHRASE)
    message = wallet_text(
        Domain.WALLET_LINK, "link this wallet to account p@example.com (nonce 00)"
    )
    result = CliRunner().invoke(app, ["wallet", "sign", "--mnemonic-file", str(mnemonic), message])
    assert result.exit_code == 0, result.output
    assert f"address:   {ADDRESS}" in result.output and "obey" not in result.output
    signature = result.output.split("signature: ")[1].strip()
    verify_wallet_link(ADDRESS, message, signature)  # raises if not valid


def test_sign_reads_the_mnemonic_from_stdin_for_a_delegation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUMULUS_AGENT_STATE_DIR", str(tmp_path / "agent"))  # no stored wallet
    message = delegation_text("0123456789abcdef", ADDRESS, default_expiry())
    result = CliRunner().invoke(
        app, ["wallet", "sign", "--mnemonic-file", "-", message], input=PHRASE + "\n"
    )
    assert result.exit_code == 0, result.output
    assert "obey" not in result.output  # never echoed back
    assert not (tmp_path / "agent" / "wallet-mnemonic").exists()  # never stored
    verify_delegation(ADDRESS, message, result.output.split("signature: ")[1].strip())
