"""`kumulus backend run` with keys that are not the database's exits 78 (EX_CONFIG, which
the systemd unit's RestartPreventExitStatus= stops restarting), with the reason and no
traceback, and makes no key of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kumulus.backend.app import create_app
from kumulus.config import BackendSettings


def test_a_replica_whose_keys_are_not_the_databases_exits_78(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'one' / 'kumulus.db'}"
    first = create_app(BackendSettings(data_dir=tmp_path / "one", KUMULUS_DATABASE_URL=url))
    first.state.db.engine.dispose()
    env = {
        **os.environ,
        "KUMULUS_BACKEND_DATA_DIR": str(tmp_path / "two"),  # no key file there
        "KUMULUS_DATABASE_URL": url,
    }
    done = subprocess.run(
        [sys.executable, "-m", "kumulus.cli", "backend", "run", "--host", "127.0.0.1",
         "--port", "9"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 78, done.stderr
    assert "KUMULUS_BACKEND_KEY_FILE" in done.stderr and "does not exist" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "two" / "backend-mnemonic").exists()
