"""Backend replicas of one database hold the same keys: the first start records each key's
address in the database, a replica given the same key files starts, and one with another
key, or with no key file (an empty data directory), refuses to start and makes no key."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kumulus.backend import backend_keys
from kumulus.backend.app import create_app
from kumulus.backend.backend_keys import KeysMismatchError
from kumulus.backend.db import Database, migrate
from kumulus.config import BackendSettings
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic, write_secret_file


def _replica(tmp_path: Path, name: str, database_url: str, **env: Any) -> BackendSettings:
    return BackendSettings(data_dir=tmp_path / name, KUMULUS_DATABASE_URL=database_url, **env)


def test_replicas_with_the_same_key_files_agree_and_record_the_address(
    tmp_path: Path, database_url: str
) -> None:
    first = _replica(tmp_path, "one", database_url)
    with TestClient(create_app(first)) as one:
        address = one.get("/healthz").json()["backendAddress"]
    db = Database(database_url)
    assert backend_keys.recorded(db)["backend"].address == address

    second = _replica(tmp_path, "two", database_url, key_file=first.key_path)
    with TestClient(create_app(second)) as two:
        assert two.get("/healthz").json()["backendAddress"] == address


def test_a_replica_with_an_empty_data_directory_refuses_to_start(
    tmp_path: Path, database_url: str
) -> None:
    create_app(_replica(tmp_path, "one", database_url))
    empty = _replica(tmp_path, "two", database_url)
    with pytest.raises(KeysMismatchError, match="KUMULUS_BACKEND_KEY_FILE") as refused:
        create_app(empty)
    assert "backend key file" in refused.value.detail
    assert "does not exist" in refused.value.detail
    assert not empty.key_path.exists()  # no key of its own that agents would refuse


def test_a_replica_with_another_key_refuses_to_start(tmp_path: Path, database_url: str) -> None:
    create_app(_replica(tmp_path, "one", database_url))
    recorded = backend_keys.recorded(Database(database_url))["backend"].address
    other = _replica(tmp_path, "two", database_url)
    write_secret_file(other.key_path, new_mnemonic())
    mine = keypair_from_mnemonic(other.key_path.read_text().strip()).ss58_address
    with pytest.raises(KeysMismatchError) as refused:
        create_app(other)
    assert mine in refused.value.detail and recorded in refused.value.detail


def test_settlement_keys_and_a_cold_deposit_address_are_checked_too(
    tmp_path: Path, database_url: str
) -> None:
    db = Database(database_url)
    migrate(db.engine)
    one = _replica(tmp_path, "one", database_url)
    assert one.payout_key_file is not None and one.anchor_key_file is not None
    payout = backend_keys.key(db, backend_keys.PAYOUT, one.payout_key_file)
    backend_keys.key(db, backend_keys.ANCHOR, one.anchor_key_file)
    cold = keypair_from_mnemonic(new_mnemonic()).ss58_address
    assert backend_keys.address(db, backend_keys.DEPOSIT, cold) == cold

    two = _replica(tmp_path, "two", database_url)
    assert two.payout_key_file is not None and two.anchor_key_file is not None
    with pytest.raises(KeysMismatchError, match="KUMULUS_BACKEND_PAYOUT_KEY_FILE"):
        backend_keys.key(db, backend_keys.PAYOUT, two.payout_key_file)
    two.payout_key_file.parent.mkdir(mode=0o700)
    shutil.copy2(one.payout_key_file, two.payout_key_file)
    copied = backend_keys.key(db, backend_keys.PAYOUT, two.payout_key_file)
    assert copied.ss58_address == payout.ss58_address
    another = keypair_from_mnemonic(new_mnemonic()).ss58_address
    with pytest.raises(KeysMismatchError, match="DEPOSIT_ADDRESS"):
        backend_keys.address(db, backend_keys.DEPOSIT, another)
    assert set(backend_keys.recorded(db)) == {"payout", "anchor", "deposit"}


def test_replicas_starting_together_on_a_shared_directory_make_one_key(
    tmp_path: Path, database_url: str
) -> None:
    db = Database(database_url)
    migrate(db.engine)
    path = tmp_path / "shared" / "backend-mnemonic"
    with ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(lambda _: backend_keys.key(db, "backend", path), range(8)))
    assert len({k.ss58_address for k in keys}) == 1
    assert backend_keys.recorded(db)["backend"].address == keys[0].ss58_address
    assert [p.name for p in path.parent.iterdir()] == ["backend-mnemonic"]  # no leftovers
