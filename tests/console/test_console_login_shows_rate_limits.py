"""The console's log-in and sign-up forms go through the same limits as the API and say
so on the page: the message above the form, status 429 and Retry-After."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kumulus.config import BackendSettings
from kumulus.server import create_server
from tests.console.conftest import csrf_of, signup
from tests.generous_limits import GENEROUS_LIMITS


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[TestClient]:
    limits = {
        **GENEROUS_LIMITS,
        "login_failures_per_account": "2/hour",
        "signup_rate_per_ip": "2/hour",
    }
    settings = BackendSettings(data_dir=tmp_path / "backend", **limits)
    with TestClient(create_server(settings), base_url="http://127.0.0.1") as client:
        yield client


def _form_error(html: str) -> str:
    found = re.search(r'id="form-error">([^<]+)<', html)
    assert found, html[:2000]
    return found.group(1)


def test_too_many_failed_logins_are_explained_on_the_login_page(strict: TestClient) -> None:
    signup(strict, "dev@example.com")
    strict.cookies.delete("kumulus_session")

    def attempt(password: str) -> object:
        return strict.post(
            "/console/login",
            data={"csrf": csrf_of(strict), "email": "dev@example.com", "password": password},
            follow_redirects=False,
        )

    assert attempt("wrong one").status_code == 401
    assert attempt("wrong two").status_code == 401
    refused = attempt("correct horse battery")
    assert refused.status_code == 429  # type: ignore[attr-defined]
    assert int(refused.headers["Retry-After"]) > 0  # type: ignore[attr-defined]
    message = _form_error(refused.text)  # type: ignore[attr-defined]
    assert "too many failed log-ins for this account" in message and "retry in" in message
    assert 'value="dev@example.com"' in refused.text  # type: ignore[attr-defined]


def test_too_many_signups_are_explained_on_the_signup_page(strict: TestClient) -> None:
    signup(strict, "one@example.com")
    signup(strict, "two@example.com")
    refused = strict.post(
        "/console/signup",
        data={
            "csrf": csrf_of(strict, "/console/signup"),
            "role": "developer",
            "email": "three@example.com",
            "password": "correct horse battery",
        },
        follow_redirects=False,
    )
    assert refused.status_code == 429
    assert "Retry-After" in refused.headers
    assert "too many sign-ups from your address" in _form_error(refused.text)
