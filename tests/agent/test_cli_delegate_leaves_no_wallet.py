"""`kumulus agent delegate` signs a delegation made now with the wallet it is given once, and
once the backend accepted it removes a wallet stored on the host (a host set up before host
keys, or one a re-link cut off: its stored wallet is not the linked one any more). A refused
delegation leaves everything as it was. `kumulus agent register` refuses to run on a host
that stores a wallet: a new host registers with its own key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kumulus.agent.registration import REGISTRATION_FILE
from kumulus.core.delegation import parse_delegation
from kumulus.core.signing import (
    keypair_from_mnemonic,
    new_mnemonic,
    verify_delegation,
    write_secret_file,
)
from tests.json_server import JsonServer


def _kumulus(state: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUMULUS_")}
    return subprocess.run(
        [sys.executable, "-m", "kumulus.cli", "agent", *args],
        input=stdin,
        env={**env, "KUMULUS_AGENT_STATE_DIR": str(state)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _host(tmp_path: Path, backend_url: str) -> tuple[Path, str]:
    """A registered legacy host's state: its stored (old) wallet and a host key."""
    state = tmp_path / "agent"
    write_secret_file(state / "wallet-mnemonic", new_mnemonic())
    write_secret_file(state / "host-key", new_mnemonic())
    backend_address = keypair_from_mnemonic(new_mnemonic()).ss58_address
    registration = {
        "backend_url": backend_url,
        "host_id": "0123456789abcdef",
        "backend_address": backend_address,
    }
    (state / REGISTRATION_FILE).write_text(json.dumps(registration))
    return state, keypair_from_mnemonic((state / "host-key").read_text()).ss58_address


@pytest.mark.parametrize(("status", "removed"), [(200, True), (401, False)])
def test_an_accepted_delegation_removes_the_stored_wallet(
    tmp_path: Path, status: int, removed: bool
) -> None:
    answer: dict[str, Any] = {"detail": "delegation refused", "code": "bad_signature"}
    with JsonServer(lambda method, path: (status, answer)) as backend:
        state, host_key = _host(tmp_path, backend.url)
        wallet = new_mnemonic()  # the wallet linked now, typed once

        out = _kumulus(state, "delegate", "--mnemonic-file", "-", stdin=wallet + "\n")

        assert (out.returncode == 0) is removed, out.stderr
        (method, path, body), = backend.requests  # fmt: skip
    assert (method, path) == ("POST", "/v1/hosts/delegation")
    said = parse_delegation(body["message"])
    verify_delegation(
        keypair_from_mnemonic(wallet).ss58_address, body["message"], body["signature"]
    )
    assert (said.host_id, said.host_key) == ("0123456789abcdef", host_key)
    assert abs(said.issued_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert (state / "wallet-mnemonic").exists() is not removed
    assert (state / "host-key").exists()
    if removed:
        assert "removed the wallet stored on this host" in out.stdout
        assert "restart the agent" in out.stdout


def test_register_refuses_to_run_while_a_wallet_is_stored(tmp_path: Path) -> None:
    with JsonServer(lambda method, path: (500, {})) as backend:
        state, _ = _host(tmp_path, backend.url)
        (state / REGISTRATION_FILE).unlink()

        out = _kumulus(state, "register", "--backend", backend.url, "--token", "kmh_x")

        assert out.returncode == 1
        assert "stores a wallet" in out.stderr and "kumulus agent delegate" in out.stderr
        assert backend.requests == []  # nothing asked of the agent or the backend
