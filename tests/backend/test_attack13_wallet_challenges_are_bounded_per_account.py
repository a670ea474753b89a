"""Every wallet challenge asked for (and every view of the console's wallet and billing
pages) adds a row: an account keeps only its latest few, so a loop of requests cannot grow
the table without end, and the latest challenge still links."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from kumulus.backend.models import WalletChallenge
from kumulus.backend.wallet_links import MAX_CHALLENGES
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.backend.conftest import Actor


def test_only_the_latest_challenges_are_kept(backend: TestClient, provider: Actor) -> None:
    first = backend.post("/v1/provider/wallet/challenge", headers=provider.headers).json()
    for _ in range(MAX_CHALLENGES + 20):
        latest = backend.post("/v1/provider/wallet/challenge", headers=provider.headers).json()
    with backend.app.state.db.session() as s:  # type: ignore[attr-defined]
        kept = s.scalar(select(func.count()).where(WalletChallenge.account_id == provider.id))
    assert kept == MAX_CHALLENGES

    wallet = keypair_from_mnemonic(new_mnemonic())

    def link(challenge: dict[str, object]) -> int:
        message = str(challenge["message"]).encode()
        return backend.post(
            "/v1/provider/wallet/link",
            headers=provider.headers,
            json={
                "challengeId": challenge["challengeId"],
                "address": wallet.ss58_address,
                "signature": "0x" + bytes(wallet.sign(message)).hex(),
            },
        ).status_code

    assert link(first) == 404  # dropped: a newer one replaced it
    assert link(latest) == 200
