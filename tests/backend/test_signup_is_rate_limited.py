"""Sign-ups are limited per client IP (in memory) and per email (in the database), before
any password is hashed."""

from __future__ import annotations

from pathlib import Path

from tests.backend.limits_fixtures import assert_rate_limited, client_of, settings_with, signup


def test_one_address_cannot_sign_up_without_end(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, signup_rate_per_ip="2/hour")
    with client_of(settings) as client, client_of(settings, ip="192.0.2.8") as other:
        assert signup(client, "one@example.com").status_code == 201
        assert signup(client, "two@example.com").status_code == 201
        assert_rate_limited(signup(client, "three@example.com"), "sign-ups from your address")
        assert signup(other, "three@example.com").status_code == 201


def test_one_email_cannot_be_signed_up_again_and_again(tmp_path: Path, database_url: str) -> None:
    settings = settings_with(tmp_path, database_url, signup_rate_per_account="2/hour")
    with client_of(settings) as client, client_of(settings, ip="192.0.2.9") as replica:
        assert signup(client, "taken@example.com").status_code == 201
        assert signup(replica, "taken@example.com").status_code == 409  # email_taken
        assert_rate_limited(signup(client, "taken@example.com"), "sign-ups for this email")
        assert signup(replica, "free@example.com").status_code == 201
