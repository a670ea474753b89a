"""A stolen session cannot guess the account's password faster than a stranger at the
log-in form: wrong passwords given to the password change and to a wallet re-link count
against the same per-account failure budget as failed log-ins, and once it is spent the
password is not checked at all (429) until the window ends."""

from __future__ import annotations

from pathlib import Path

from substrateinterface import Keypair

from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.backend.conftest import Actor, link_wallet
from tests.backend.limits_fixtures import assert_rate_limited, client_of, login, settings_with

NEW = "a much longer new passphrase"


def _change(client: object, actor: Actor, current: str) -> object:
    return client.post(  # type: ignore[attr-defined]
        "/v1/auth/password",
        json={"currentPassword": current, "newPassword": NEW},
        headers=actor.headers,
    )


def _relink(client: object, actor: Actor, wallet: Keypair, password: str) -> object:
    challenge = client.post(  # type: ignore[attr-defined]
        "/v1/provider/wallet/challenge", headers=actor.headers
    ).json()
    return client.post(  # type: ignore[attr-defined]
        "/v1/provider/wallet/link",
        headers=actor.headers,
        json={
            "challengeId": challenge["challengeId"],
            "address": wallet.ss58_address,
            "signature": "0x" + bytes(wallet.sign(challenge["message"].encode())).hex(),
            "password": password,
        },
    )


def test_password_guesses_through_a_session_share_the_login_failure_budget(
    tmp_path: Path,
) -> None:
    settings = settings_with(tmp_path, login_failures_per_account="3/hour")
    with client_of(settings) as client:
        victim = Actor(client, "provider")  # the attacker holds this session, not the password
        link_wallet(client, victim, keypair_from_mnemonic(new_mnemonic()))
        thief_wallet = keypair_from_mnemonic(new_mnemonic())
        assert _change(client, victim, "guess 1").status_code == 403
        assert _relink(client, victim, thief_wallet, "guess 2").status_code == 403
        assert _change(client, victim, "guess 3").status_code == 403
        # The budget is spent: even the right password is not checked now, by any door.
        assert_rate_limited(_change(client, victim, victim.password), "failed")
        assert_rate_limited(_relink(client, victim, thief_wallet, victim.password), "failed")
        assert_rate_limited(login(client, victim.email, victim.password), "failed log-ins")
