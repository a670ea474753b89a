"""The provider console in real Chromium delegates a pending host's key through the browser
extension (the standard injected-extension API; the test double signs with a real sr25519
wallet, `<Bytes>`-wrapped as real extensions do), then revokes it after confirming."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, expect

from kumulus.core.signing import Domain, keypair_from_mnemonic, new_mnemonic, sign_envelope
from tests.backend.conftest import register_payload
from tests.e2e.agent_process import BackendProcess
from tests.e2e.browser import screenshot
from tests.e2e.test_console_provider import FAKE_EXTENSION

pytestmark = pytest.mark.slow
EMAIL, PASSWORD = "prov-keys@example.com", "a long password"


def _pending_host(url: str) -> tuple[str, str]:
    """A provider with a linked wallet (mnemonic returned) and a host registered with its
    own key, pending."""
    mnemonic = new_mnemonic()
    wallet = keypair_from_mnemonic(mnemonic)
    with httpx.Client(base_url=url, timeout=30) as api:
        api.post("/v1/auth/signup", json={"email": EMAIL, "password": PASSWORD, "role": "provider"})
        token = api.post("/v1/auth/login", json={"email": EMAIL, "password": PASSWORD})
        api.headers["Authorization"] = f"Bearer {token.json()['token']}"
        challenge = api.post("/v1/provider/wallet/challenge").json()
        api.post(
            "/v1/provider/wallet/link",
            json={
                "challengeId": challenge["challengeId"],
                "address": wallet.ss58_address,
                "signature": "0x" + bytes(wallet.sign(challenge["message"].encode())).hex(),
            },
        ).raise_for_status()
        host_token = api.post("/v1/provider/host-tokens").json()["token"]
        host_key = keypair_from_mnemonic(new_mnemonic())
        env = sign_envelope(host_key, register_payload(host_token), domain=Domain.HOST_REGISTRATION)
        resp = api.post("/v1/hosts/register", json=env.model_dump())
        assert resp.status_code == 201 and resp.json()["hostKeyState"] == "pending", resp.text
        return mnemonic, str(resp.json()["hostId"])


def test_delegate_with_the_extension_then_revoke(chromium: Browser, tmp_path: Path) -> None:
    backend = BackendProcess(tmp_path / "backend").start()
    context = chromium.new_context(base_url=backend.url, viewport={"width": 1280, "height": 900})
    try:
        mnemonic, host_id = _pending_host(backend.url)
        wallet = keypair_from_mnemonic(mnemonic)
        signed: list[str] = []

        def sign(address: str, data_hex: str) -> str:
            assert address == wallet.ss58_address
            message = bytes.fromhex(data_hex.removeprefix("0x"))
            signed.append(message.decode())
            return "0x" + bytes(wallet.sign(b"<Bytes>" + message + b"</Bytes>")).hex()

        context.expose_function("kumulusTestSign", sign)
        context.add_init_script(FAKE_EXTENSION % {"address": wallet.ss58_address})
        page = context.new_page()
        page.goto("/console/login")
        page.get_by_label("Email").fill(EMAIL)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name=re.compile("Log in", re.I)).click()
        page.goto(f"/console/provider/hosts/{host_id}")
        expect(page.locator("#key-state")).to_contain_text("Pending")
        text = page.locator("#delegation-text").inner_text()
        expect(page.locator("#sign-command")).to_have_text(f'kumulus wallet sign "{text}"')

        page.get_by_role("button", name="Connect wallet extension").click()
        expect(page.locator("#wallet-accounts")).to_contain_text("Test wallet")
        screenshot(page, "provider-host-key-pending")
        page.get_by_role("button", name="Sign and delegate").click()
        expect(page.locator("#key-state")).to_contain_text("Delegated")
        expect(page.get_by_role("status").first).to_contain_text("Host key delegated.")
        assert signed == [text]
        screenshot(page, "provider-host-key-delegated")

        # Revoking asks first: dismissed, nothing happens; accepted, the key is revoked.
        def dismiss(dialog: Dialog) -> None:
            dialog.dismiss()

        page.once("dialog", dismiss)
        page.get_by_role("button", name="Revoke host key").click()
        expect(page.locator("#key-state")).to_contain_text("Delegated")

        def accept(dialog: Dialog) -> None:
            assert "Revoke this host's key" in dialog.message
            dialog.accept()

        page.once("dialog", accept)
        page.get_by_role("button", name="Revoke host key").click()
        expect(page.locator("#key-state")).to_contain_text("Revoked")
        with httpx.Client(base_url=backend.url, timeout=30) as api:
            token = api.post("/v1/auth/login", json={"email": EMAIL, "password": PASSWORD})
            view = api.get(
                f"/v1/provider/hosts/{host_id}",
                headers={"Authorization": f"Bearer {token.json()['token']}"},
            ).json()
        assert view["hostKeyState"] == "revoked"
    finally:
        context.close()
        backend.stop()
