"""`kumulus wallet import` stores the mnemonic 0600 and prints only the address."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from kumulus.cli import app

PHRASE = "bottom drive obey lake curtain smoke basket hold race lonely fit walk"
ADDRESS = "5DfhGyQdFobKM8NsWvEeAKk5EQQgYe9AydgJ7rMB6E1EqRzV"


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KUMULUS_AGENT_STATE_DIR", str(tmp_path / "agent"))
    return tmp_path / "agent"


def test_import_from_stdin_prints_address_not_mnemonic(state: Path) -> None:
    result = CliRunner().invoke(
        app, ["wallet", "import", "--mnemonic-file", "-"], input=PHRASE + "\n"
    )
    assert result.exit_code == 0, result.output
    assert ADDRESS in result.output
    assert "obey" not in result.output
    stored = state / "wallet-mnemonic"
    assert stored.read_text().strip() == PHRASE
    assert stored.stat().st_mode & 0o777 == 0o600
    address = CliRunner().invoke(app, ["wallet", "address"])
    assert address.output.strip() == ADDRESS


def test_import_refuses_a_bad_phrase_without_echoing_it(state: Path) -> None:
    result = CliRunner().invoke(
        app, ["wallet", "import", "--mnemonic-file", "-"], input="not a real phrase secretword\n"
    )
    assert result.exit_code == 1
    assert "secretword" not in result.output
    assert not (state / "wallet-mnemonic").exists()


def test_without_a_terminal_the_prompt_is_refused(state: Path) -> None:
    result = CliRunner().invoke(app, ["wallet", "import"], input="")
    assert result.exit_code == 2
    assert "--mnemonic-file" in result.output


def test_new_wallet_never_overwrites(state: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["wallet", "new"]).exit_code == 0
    before = (state / "wallet-mnemonic").read_text()
    again = runner.invoke(app, ["wallet", "new"])
    assert again.exit_code == 1 and "refusing to overwrite" in again.output
    assert (state / "wallet-mnemonic").read_text() == before


def test_agent_token_is_stable_and_0600(state: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["agent", "token"]).output.strip()
    assert len(first) >= 40
    assert runner.invoke(app, ["agent", "token"]).output.strip() == first
    assert (state / "admin-token").stat().st_mode & 0o777 == 0o600
