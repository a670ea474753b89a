"""The provider console in real Chromium: register, link a wallet through the standard
injected-extension API (a test double whose signatures are real sr25519 signatures), add a
host with the one-time command, see it come online and its charts fill."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import docker
import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.e2e.agent_process import AgentProcess, BackendProcess, make_host_key, register_agent
from tests.e2e.browser import screenshot

pytestmark = pytest.mark.slow

# What polkadot.js / Talisman inject: window.injectedWeb3[name].enable(origin) ->
# { accounts.get(), signer.signRaw({address, data, type}) }. Signing is delegated to the test
# (kumulusTestSign, a real sr25519 key in Python), which wraps the bytes in <Bytes>...</Bytes>
# as the real extensions do.
FAKE_EXTENSION = """
window.injectedWeb3 = {
  "polkadot-js": {
    version: "0.0-test",
    enable: async (origin) => ({
      accounts: { get: async () => [{ address: "%(address)s", name: "Test wallet" }] },
      signer: {
        signRaw: async ({ address, data, type }) => ({
          id: 1, signature: await window.kumulusTestSign(address, data),
        }),
      },
    }),
  },
};
"""


def test_provider_console_end_to_end(
    chromium: Browser, docker_client: docker.DockerClient, tmp_path: Path
) -> None:
    mnemonic = new_mnemonic()
    wallet = keypair_from_mnemonic(mnemonic)
    backend = BackendProcess(tmp_path / "backend", KUMULUS_BACKEND_HEARTBEAT_TTL="5").start()
    context = chromium.new_context(base_url=backend.url, viewport={"width": 1280, "height": 900})
    signed: list[str] = []

    def sign(address: str, data_hex: str) -> str:
        assert address == wallet.ss58_address
        message = bytes.fromhex(data_hex.removeprefix("0x"))
        signed.append(message.decode())
        return "0x" + bytes(wallet.sign(b"<Bytes>" + message + b"</Bytes>")).hex()

    context.expose_function("kumulusTestSign", sign)
    context.add_init_script(FAKE_EXTENSION % {"address": wallet.ss58_address})
    page: Page = context.new_page()
    agent = None
    try:
        page.goto("/console/signup")
        page.get_by_role("radio", name=re.compile("lend my machines")).check()
        page.get_by_label("Email", exact=True).fill("prov@example.com")
        page.locator("#f-password").fill("a long password")
        page.locator("#f-name").fill("Acme Compute")
        page.locator("#f-country").fill("FRA")
        page.locator("#f-region").fill("eu")
        page.get_by_role("button", name="Create account").click()
        expect(page.locator("#e-country")).to_be_visible()
        page.locator("#f-password").fill("a long password")
        page.locator("#f-country").fill("FR")
        page.get_by_role("button", name="Create account").click()
        expect(page).to_have_url(re.compile("/console/provider/wallet$"))

        # A pasted signature that is not the wallet's: refused next to the field.
        page.locator("#f-address").fill(wallet.ss58_address)
        page.locator("#f-signature").fill("0x" + "00" * 64)
        page.get_by_role("button", name="Link wallet").click()
        expect(page.locator("#e-signature")).to_contain_text("wallet not linked")

        # Through the extension: connect, pick the account, sign the challenge.
        page.get_by_role("button", name="Connect wallet extension").click()
        expect(page.locator("#wallet-accounts")).to_contain_text("Test wallet")
        screenshot(page, "provider-wallet")
        challenge = page.locator("#challenge").inner_text()
        page.get_by_role("button", name="Sign and link").click()
        expect(page.locator("#linked-wallet")).to_have_text(wallet.ss58_address)
        assert signed == [challenge]

        # Add a host: the one-time command, then the page waits until the host is online.
        page.get_by_role("link", name="Add a host").click()
        page.get_by_role("button", name="Create the setup command").click()
        command = page.locator("#setup-command").inner_text()
        served = httpx.get(f"{backend.url}/provider-setup.sh")
        assert (
            served.status_code == 200
            and f"BACKEND=${{KUMULUS_BACKEND_URL:-{backend.url}}}" in served.text
        )
        # It downloads the script, checks its SHA-256, then runs it (plain http: said so).
        digest = hashlib.sha256(served.content).hexdigest()
        assert command.startswith(
            f"curl -fsSL -o kumulus-setup.sh {backend.url}/provider-setup.sh && "
            f"echo '{digest} *kumulus-setup.sh' | sha256sum -c - && sudo bash kumulus-setup.sh"
        ), command
        assert command.endswith(" --insecure-http")
        token = command.split("--token ")[1].split()[0]
        expect(page.locator("[aria-live=polite]").last).to_contain_text("waiting")
        screenshot(page, "provider-add-host")
        make_host_key(tmp_path / "agent")
        agent = AgentProcess(
            tmp_path / "agent",
            (23610, 23619),
            KUMULUS_AGENT_STATS_INTERVAL="1",
            KUMULUS_AGENT_CPU_CAPACITY="2",
            KUMULUS_AGENT_MEMORY_CAPACITY="4g",
            KUMULUS_AGENT_DISK_CAPACITY="40g",
        ).start()
        out = register_agent(agent, backend.url, token, mnemonic)
        assert out.returncode == 0, out.stderr
        expect(page.locator(".state-online")).to_have_text("online", timeout=20_000)
        page.reload()
        assert token not in page.content()  # the token is shown once

        # Hosts list and the host's page: online, capacity, charts from signed stats.
        page.get_by_role("link", name="Hosts").click()
        expect(page.locator(".state-online").first).to_be_visible()
        expect(page.locator("table")).to_contain_text("0 / 2")
        screenshot(page, "provider-hosts")
        page.locator("table a.mono").first.click()
        expect(page.locator("figure svg polyline")).to_have_count(3, timeout=20_000)
        page.wait_for_function(
            "() => /\\((\\d+) samples\\)/.exec(document.body.innerText)"
            " && Number(/\\((\\d+) samples\\)/.exec(document.body.innerText)[1]) >= 4",
            timeout=30_000,
        )
        label = page.locator("figure svg").first.get_attribute("aria-label") or ""
        assert re.search(r"CPU: \d+ samples", label), label
        screenshot(page, "provider-host")

        # Profile with prices: a bad amount is refused next to its field.
        page.get_by_role("link", name="Profile").click()
        page.locator("#f-price_cpu").fill("cheap")
        page.get_by_role("button", name="Save").click()
        expect(page.locator("#e-price_cpu")).to_be_visible()
        page.locator("#f-price_cpu").fill("0.02")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("status")).to_contain_text("Profile saved")
        screenshot(page, "provider-profile")
    finally:
        context.close()
        if agent is not None:
            agent.stop()
        backend.stop()
