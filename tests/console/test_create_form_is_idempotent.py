"""The console's create form carries an Idempotency-Key made once per form shown: the same
form sent twice (double click, resend after a timeout) makes one VM and both answers lead
to it; a form shown again after a refusal keeps its key; a new form has a new key. The
size preset shown is the one the fields hold, or Custom."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from kumulus.backend import vms
from kumulus.backend.models import VM
from tests.console.test_create_page_shows_chosen_host_price import FORM, FakeAgent, _setup


def _key(html: str) -> str:
    found = re.search(r'name="idempotency_key" value="([^"]+)"', html)
    assert found, "the form carries a key"
    return found.group(1)


def _checked_preset(html: str) -> str:
    found = re.findall(r'name="preset" value="([^"]+)" checked', html)
    assert len(found) == 1, found
    return found[0]


def _vm_count(server: TestClient) -> int:
    with server.app.state.db.session() as db:  # type: ignore[attr-defined]
        return int(db.scalar(select(func.count()).select_from(VM)) or 0)


def test_the_same_form_sent_twice_makes_one_vm(
    server: TestClient, ssh_keypair: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vms, "AgentClient", FakeAgent)
    csrf, _ = _setup(server, ssh_keypair[1])
    page = server.get("/console/vms/new").text
    key = _key(page)
    assert _key(server.get("/console/vms/new").text) != key
    key_id = re.search(r'name="ssh_key_id"[^>]*>\s*<option value="(\d+)"', page)
    assert key_id
    form = {"csrf": csrf, **FORM, "ssh_key_id": key_id.group(1), "idempotency_key": key}

    # Refused (no username): shown again with the same key, and nothing made.
    refused = server.post("/console/vms", data=form)
    assert refused.status_code == 422 and _key(refused.text) == key
    assert _vm_count(server) == 0

    form["username"] = "alice"
    with ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(
                lambda _: server.post("/console/vms", data=form, follow_redirects=False),
                range(2),
            )
        )
    again = server.post("/console/vms", data=form, follow_redirects=False)
    locations = {a.headers.get("location") for a in [*answers, again]}
    assert [a.status_code for a in [*answers, again]] == [303, 303, 303]
    assert len(locations) == 1 and re.fullmatch(r"/console/vms/[0-9a-f]{16}", locations.pop())
    assert _vm_count(server) == 1

    # A new form is a new VM.
    form["idempotency_key"] = _key(server.get("/console/vms/new").text)
    assert server.post("/console/vms", data=form, follow_redirects=False).status_code == 303
    assert _vm_count(server) == 2


def test_the_preset_shown_is_the_one_the_fields_hold(
    server: TestClient, ssh_keypair: tuple[Path, str]
) -> None:
    csrf, _ = _setup(server, ssh_keypair[1])
    assert _checked_preset(server.get("/console/vms/new").text) == "1/1g/10g"
    sent = {"csrf": csrf, "name": "vm", "memory": "1g", "disk": "10g"}
    # Nano was checked when the vCPUs were edited: the page shows Custom.
    page = server.post("/console/vms", data={**sent, "preset": "1/1g/10g", "cpu": "3"}).text
    assert _checked_preset(page) == "custom"
    # Custom was checked but the fields are Medium's: Medium.
    medium = {**sent, "preset": "custom", "cpu": "2.0", "memory": "4G", "disk": "40g"}
    assert _checked_preset(server.post("/console/vms", data=medium).text) == "2/4g/40g"
