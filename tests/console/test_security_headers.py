"""Every answer carries the security headers (CSP without inline script, no framing, no
referrer, no-store unless cacheable), the consoles' templates hold no inline script or
handler the CSP would block, and a backend with a public URL refuses other Host names."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from fastapi.testclient import TestClient

from kumulus.config import BackendSettings
from kumulus.server import create_server
from tests.console.conftest import signup


def test_console_pages_and_api_answers_carry_the_headers(server: TestClient) -> None:
    signup(server, "dev@example.com")
    for path in ("/console/login", "/console/account", "/v1/me", "/healthz", "/nope"):
        resp = server.get(path)
        csp = resp.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert "unsafe-inline" not in csp.replace("style-src-attr 'unsafe-inline'", ""), path
        assert resp.headers["x-frame-options"] == "DENY", path
        assert resp.headers["referrer-policy"] == "no-referrer", path
        assert resp.headers["x-content-type-options"] == "nosniff", path
        assert resp.headers["cache-control"] == "no-store", path
    static = server.get("/console/static/console.js")
    assert static.status_code == 200 and "no-store" not in static.headers.get("cache-control", "")


def test_templates_have_no_inline_script_or_handler() -> None:
    root = Path(str(resources.files("kumulus.console") / "templates"))
    for page in root.rglob("*.html"):
        text = page.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in tag, (page.name, tag)
        assert not re.search(r"\son[a-z]+\s*=", text), page.name
        assert "<style" not in text and "javascript:" not in text, page.name
        assert "hx-on" not in text and "hx-vals" not in text, page.name  # htmx's eval


def test_a_public_url_limits_the_host_names(tmp_path: Path) -> None:
    settings = BackendSettings(
        data_dir=tmp_path / "backend", public_url="https://cloud.example", allowed_hosts=[]
    )
    app = create_server(settings)
    with TestClient(app, base_url="https://cloud.example") as client:
        assert client.get("/console/login").status_code == 200
        refused = client.get("/console/login", headers={"Host": "rebound.example"})
        assert refused.status_code == 400
        assert refused.headers["x-frame-options"] == "DENY"
        assert client.get("/healthz", headers={"Host": "127.0.0.1:8080"}).status_code == 200
