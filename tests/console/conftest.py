"""Console fixtures: the backend with the consoles mounted (kumulus.server), in process."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kumulus.config import BackendSettings
from kumulus.server import create_server
from tests.generous_limits import GENEROUS_LIMITS


@pytest.fixture
def server(tmp_path: Path) -> Iterator[TestClient]:
    settings = BackendSettings(data_dir=tmp_path / "backend", signup_credit="10", **GENEROUS_LIMITS)
    with TestClient(create_server(settings), base_url="http://127.0.0.1") as client:
        yield client


def csrf_of(client: TestClient, path: str = "/console/login") -> str:
    page = client.get(path)
    found = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


def signup(client: TestClient, email: str, role: str = "developer", **extra: str) -> str:
    csrf = csrf_of(client, "/console/signup")
    resp = client.post(
        "/console/signup",
        data={
            "csrf": csrf,
            "role": role,
            "email": email,
            "password": "correct horse battery",
            **extra,
        },
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text
    return csrf


def field_errors(html: str) -> list[str]:
    return re.findall(r'class="field-error"[^>]*>([^<]+)<', html)
