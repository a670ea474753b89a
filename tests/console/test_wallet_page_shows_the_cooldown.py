"""The provider's wallet page asks for the password to replace a linked wallet and shows
until when payouts are paused after a re-link."""

from __future__ import annotations

import html
import re

from fastapi.testclient import TestClient

from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.console.conftest import signup

PASSWORD = "correct horse battery"


def _link(server: TestClient, csrf: str, password: str | None) -> str:
    page = server.get("/console/provider/wallet").text
    challenge_id = re.search(r'name="challenge_id" value="(\d+)"', page).group(1)  # type: ignore[union-attr]
    message = re.search(r'data-message="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    wallet = keypair_from_mnemonic(new_mnemonic())
    form = {
        "csrf": csrf,
        "challenge_id": challenge_id,
        "address": wallet.ss58_address,
        "signature": "0x" + bytes(wallet.sign(html.unescape(message).encode())).hex(),
    }
    if password is not None:
        form["password"] = password
    return server.post("/console/provider/wallet", data=form).text


def test_relink_asks_for_the_password_and_shows_the_cooldown(server: TestClient) -> None:
    csrf = signup(server, "prov@example.com", role="provider", name="Acme")
    first = _link(server, csrf, None)
    assert "Wallet linked." in first and 'name="password"' in first
    assert "wallet-cooldown" not in first
    refused = _link(server, csrf, None)
    assert "replacing the payout wallet needs your password" in refused
    relinked = _link(server, csrf, PASSWORD)
    assert "Wallet linked." in relinked
    shown = re.search(
        r'id="wallet-cooldown">Payouts are paused until <strong>([^<]+)</strong>', relinked
    )
    assert shown and shown.group(1).endswith("UTC")
