"""The consoles work under their Content-Security-Policy in real Chromium: the main pages
(login, VM create with its live quote, a VM's page, a provider's host page, the wallet link
page with its extension button) load, run their htmx and console.js, and report no CSP
violation and no console error. The backend runs in this process (uvicorn on a thread) with
rows written straight to its database: no agent or Docker needed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, ConsoleMessage, Page, expect
from sqlalchemy import select

from kumulus.backend.clock import utcnow
from kumulus.backend.models import Account
from kumulus.config import BackendSettings
from kumulus.server import create_server
from tests.backend.billing_fixtures import host, vm
from tests.e2e.agent_process import free_port

pytestmark = pytest.mark.slow
PASSWORD = "correct horse battery"
# Recorded before any page script runs (an init script is not subject to the page's CSP).
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[tuple[str, object]]:
    app = create_server(BackendSettings(data_dir=tmp_path / "backend", signup_credit="10"))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "backend did not start"
        time.sleep(0.05)
    url = f"http://127.0.0.1:{server.config.port}"
    try:
        yield url, app.state.db
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _seed(url: str, db: object) -> tuple[str, str]:
    """A developer with a running VM on a provider's online host; their ids."""
    with httpx.Client(base_url=url) as client:
        for email, role in (("dev@example.com", "developer"), ("prov@example.com", "provider")):
            resp = client.post(
                "/v1/auth/signup", json={"email": email, "password": PASSWORD, "role": role}
            )
            assert resp.status_code == 201, resp.text
    with db.session() as s:  # type: ignore[attr-defined]
        dev = s.scalar(select(Account).where(Account.email == "dev@example.com"))
        prov = s.scalar(select(Account).where(Account.email == "prov@example.com"))
        on = host(s, prov)
        row = vm(s, dev, on, utcnow() - timedelta(minutes=5))
        row.ssh_host, row.ssh_port = "203.0.113.5", 2201
        s.commit()
        return on.id, row.id


def _log_in(page: Page, url: str, email: str) -> None:
    page.goto(f"{url}/console/login")
    page.fill("#f-email", email)
    page.fill("#f-password", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_load_state("networkidle")


def test_main_pages_work_under_the_csp(chromium: Browser, backend: tuple[str, object]) -> None:
    url, db = backend
    host_id, vm_id = _seed(url, db)
    context = chromium.new_context()
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    errors: list[str] = []

    def console_message(message: ConsoleMessage) -> None:
        where = str(message.location.get("url", ""))
        if message.type == "error" and not where.endswith("/favicon.ico"):  # none is served
            errors.append(f"{message.text} ({where})")

    page.on("console", console_message)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    seen: list[str] = []

    def check(path: str) -> None:
        seen.append(path)
        assert page.evaluate("window.__csp") == [], path
        assert errors == [], (path, errors)

    response = page.goto(f"{url}/console/login")
    assert (
        response is not None and "script-src 'self'" in response.headers["content-security-policy"]
    )
    check("login")
    _log_in(page, url, "dev@example.com")
    page.goto(f"{url}/console/vms/new")
    expect(page.locator("#quote")).to_contain_text("per hour", timeout=15_000)  # htmx ran
    check("VM create")
    page.goto(f"{url}/console/vms/{vm_id}")
    with page.expect_response(lambda r: r.url.endswith(f"/console/vms/{vm_id}/panel")):
        pass  # the live panel's poll (console.js + htmx) fired
    expect(page.locator("#ssh-line")).to_be_visible()
    check("VM page")
    page.click("header form button")  # log out
    page.wait_for_load_state("networkidle")

    _log_in(page, url, "prov@example.com")
    page.goto(f"{url}/console/provider/hosts/{host_id}")
    with page.expect_response(lambda r: r.url.endswith(f"/console/provider/hosts/{host_id}/panel")):
        pass
    check("host page")
    page.goto(f"{url}/console/provider/wallet")
    page.click("#wallet-connect")  # wired by console.js, not an inline handler
    expect(page.locator("#wallet-status")).to_contain_text("No wallet extension found")
    check("wallet page")
    assert len(seen) == 5
    context.close()
