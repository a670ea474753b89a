"""The console flows of issue 15 in real Chromium, against a backend and an agent (on the
fake engine: nothing here needs Docker) over real HTTP, in one browser session: size
presets follow the fields; a double click on "Create VM" sends one request with the button
disabled, and makes one VM; the VM page shows its stages while it comes up, then its
price, cost so far, host-key fingerprint and a working copy button; a provider drains and
undrains a host."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from tests.e2e.browser import screenshot
from tests.fakes import FakeRuntime
from tests.fuzz_platform import PASSWORD, Platform, platform

pytestmark = pytest.mark.slow

CREATE_DELAY = 2.0  # the fake engine's create: long enough to see the stages
# Reports the create button's state just after each submit has been handled.
SUBMIT_PROBE = """() => document.addEventListener("submit", (event) => setTimeout(() => {
  const button = event.target.querySelector("#create-vm");
  if (button) window.kumulusTestSeen(button.disabled, button.textContent);
}, 0))"""


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    runtime = FakeRuntime()
    runtime.create_delay = CREATE_DELAY
    # The agent reports every second (stats_interval): more than the default heartbeat limit.
    with platform(
        tmp_path, monkeypatch, runtime, consoles=True, heartbeat_rate_per_host="1000/minute"
    ) as running:
        yield running


def _logged_in(chromium: Browser, url: str, role: str) -> tuple[BrowserContext, Page]:
    context = chromium.new_context(base_url=url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto("/console/login")
    page.get_by_label("Email", exact=True).fill(f"{role}@fuzz.example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).not_to_have_url(re.compile("/console/login$"))
    return context, page


def _checked_preset(page: Page) -> str:
    return str(page.locator("input[name=preset]:checked").get_attribute("value"))


def test_create_flow_and_drain(chromium: Browser, live: Platform) -> None:
    context, page = _logged_in(chromium, live.backend_url, "developer")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.backend_url)
    try:
        # Presets: the default is Nano; an edit turns it Custom; a preset fills the fields.
        page.goto("/console/vms/new")
        assert _checked_preset(page) == "1/1g/10g"
        page.get_by_label("vCPUs", exact=True).fill("3")
        assert _checked_preset(page) == "custom"
        page.get_by_role("radio", name=re.compile("^Medium")).check()
        expect(page.get_by_label("vCPUs", exact=True)).to_have_value("2")
        expect(page.locator("#f-memory")).to_have_value("4g")
        page.locator("#f-memory").fill("2g")
        page.locator("#f-disk").fill("20g")
        page.get_by_label("vCPUs", exact=True).fill("1")
        assert _checked_preset(page) == "1/2g/20g"  # the fields are Small's
        page.locator("#f-username").fill("alice")
        expect(page.locator("#quote")).to_contain_text("per hour while running")
        screenshot(page, "developer-create-vm")

        # Double click: one request, held here until the button is seen disabled.
        held: list[Route] = []
        seen: list[list[Any]] = []
        page.expose_function("kumulusTestSeen", lambda *state: seen.append(list(state)))
        page.evaluate(SUBMIT_PROBE)
        page.route("**/console/vms", lambda route: held.append(route))
        button = page.locator("#create-vm")
        expect(button).to_be_enabled()
        button.dblclick(no_wait_after=True)
        page.wait_for_timeout(500)  # a second request would have arrived by now
        # What the page reported after each submit (page.evaluate and locators wait for
        # the held navigation).
        assert seen and all(s == [True, "Creating…"] for s in seen), seen
        assert len(held) == 1
        held[0].continue_()
        page.unroute("**/console/vms")

        # The VM page: the stages while the host creates it, then running.
        expect(page).to_have_url(re.compile(r"/console/vms/[0-9a-f]{16}$"))
        stages = page.locator("#create-stages")
        expect(stages).to_contain_text(f"Placed on host {live.host_id}")
        expect(stages.locator("[aria-current=step]")).to_contain_text("Starting")
        screenshot(page, "developer-vm-stages")
        expect(page.locator(".state").first).to_have_text("running", timeout=30_000)
        expect(stages).to_have_count(0)
        vms = httpx.get(f"{live.backend_url}/v1/vms", headers=live.developer).json()["items"]
        assert len(vms) == 1

        expect(page.locator("#price-per-hour")).to_have_text(vms[0]["pricePerHour"])
        expect(page.locator("#cost-so-far")).to_have_text(re.compile(r"^[0-9.]+ UNIT$"))
        fingerprint = page.locator("#host-key-fingerprint")
        expect(fingerprint).to_have_text(vms[0]["hostKeyFingerprint"])
        assert fingerprint.inner_text().startswith("SHA256:")
        page.get_by_role("button", name="Copy").click()
        expect(page.locator("#copy-ssh-status")).to_have_text("Copied")
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied == vms[0]["sshCommand"] and copied.startswith("ssh -p ")
        screenshot(page, "developer-vm")
    finally:
        context.close()

    context, page = _logged_in(chromium, live.backend_url, "provider")
    try:
        page.goto("/console/provider/hosts")
        row = page.locator("#host-rows tr", has_text=live.host_id)
        expect(page.locator("#earnings-withdrawable")).to_contain_text("UNIT")
        row.get_by_role("button", name="Drain").click()
        expect(row.locator(".placement")).to_have_text("draining")
        hosts = f"{live.backend_url}/v1/provider/hosts/{live.host_id}"
        assert httpx.get(hosts, headers=live.provider).json()["draining"] is True
        screenshot(page, "provider-hosts")
        row.get_by_role("button", name="Undrain").click()
        expect(row.locator(".placement")).to_have_text("taken")
        assert httpx.get(hosts, headers=live.provider).json()["draining"] is False

        # The host's page: drained and undrained from its panel too.
        page.get_by_role("link", name=live.host_id).click()
        page.get_by_role("button", name="Drain").click()
        expect(page.locator("#placement")).to_contain_text("Draining")
        screenshot(page, "provider-host")
        page.get_by_role("button", name="Undrain").click()
        expect(page.locator("#placement")).to_contain_text("Taken")
        assert httpx.get(hosts, headers=live.provider).json()["draining"] is False
    finally:
        context.close()
