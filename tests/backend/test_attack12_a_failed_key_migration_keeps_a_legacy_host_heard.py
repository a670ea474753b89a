"""Attack (issue 12 review, a provider's loss): `provider-setup.sh` moves a legacy host onto
a key of its own by making the key, then delegating it with the stored wallet, and says
"the host goes on signing with the wallet" when that delegation fails (backend away, wallet
linked since). The agent must then indeed sign with the wallet: a key no delegation names
makes every heartbeat and answer refused, the host offline and its VMs unbilled."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from substrateinterface import Keypair

from kumulus.agent.host_key import ensure_host_key, signing_key
from kumulus.config import AgentSettings
from kumulus.core.signing import Domain, sign_envelope, write_secret_file
from tests.backend.conftest import FULL_ISOLATION, Actor, legacy_host, link_wallet


def test_a_legacy_host_whose_key_was_not_delegated_still_signs_with_its_wallet(
    backend: TestClient, provider: Actor, wallet: Keypair, tmp_path: Path
) -> None:
    link_wallet(backend, provider, wallet)
    host_id = legacy_host(backend, provider, wallet)  # the wallet is on the host
    settings = AgentSettings(state_dir=tmp_path / "agent")
    write_secret_file(settings.mnemonic_path, wallet.mnemonic)
    ensure_host_key(settings)  # setup made the key; its delegation then failed

    signer = signing_key(settings)

    assert signer is not None
    payload = {"kind": "health", "hostId": host_id, "agentVersion": "0.1.0",
               "isolation": FULL_ISOLATION}  # fmt: skip
    env = sign_envelope(signer, payload, domain=Domain.HEARTBEAT)
    assert backend.post("/v1/hosts/heartbeat", json=env.model_dump()).status_code == 202
