"""`kumulus up` keeps the local provider's wallet with the backend's data, never in the
agent's state directory: a wallet an earlier `kumulus up` left there is moved out, once."""

from __future__ import annotations

from pathlib import Path

from kumulus.config import AgentSettings, BackendSettings
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic, write_secret_file
from kumulus.up import _local_wallet


def test_an_old_wallet_is_moved_out_of_the_agent(tmp_path: Path) -> None:
    backend = BackendSettings(data_dir=tmp_path / "backend")
    agent = AgentSettings(state_dir=tmp_path / "agent")
    mnemonic = new_mnemonic()
    write_secret_file(agent.mnemonic_path, mnemonic)
    wallet = _local_wallet(backend, agent)
    assert wallet.ss58_address == keypair_from_mnemonic(mnemonic).ss58_address
    assert not agent.mnemonic_path.exists()
    stored = backend.data_dir / "local-provider-wallet"
    assert stored.stat().st_mode & 0o777 == 0o600
    assert _local_wallet(backend, agent).ss58_address == wallet.ss58_address  # kept


def test_a_new_machine_gets_a_wallet_outside_the_agent(tmp_path: Path) -> None:
    agent = AgentSettings(state_dir=tmp_path / "agent")
    _local_wallet(BackendSettings(data_dir=tmp_path / "backend"), agent)
    assert (tmp_path / "backend" / "local-provider-wallet").exists()
    assert not agent.mnemonic_path.exists()
