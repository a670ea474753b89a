"""The keys that send on chain (payout, anchor, deposit) must be three different keys: the
payout key's nonces must be the payouts' alone, or a remark sent with it would look like a
payout the database does not know and stop payouts as after a restore. A backend given the
same key for two of them refuses to start, naming both settings."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kumulus.backend.app import create_app
from kumulus.backend.backend_keys import KeysMismatchError
from kumulus.config import BackendSettings
from kumulus.core.signing import new_mnemonic, write_secret_file


def test_the_same_key_for_payouts_and_anchors_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    write_secret_file(keys / "payout", new_mnemonic())
    shutil.copy2(keys / "payout", keys / "anchor")
    settings = BackendSettings(
        data_dir=tmp_path / "backend",
        chain_url="ws://127.0.0.1:9",  # never reached: refused before
        payout_key_file=keys / "payout",
        anchor_key_file=keys / "anchor",
    )
    with pytest.raises(KeysMismatchError) as refused:
        create_app(settings)
    detail = refused.value.detail
    assert "KUMULUS_BACKEND_PAYOUT_KEY_FILE" in detail
    assert "KUMULUS_BACKEND_ANCHOR_KEY_FILE" in detail
