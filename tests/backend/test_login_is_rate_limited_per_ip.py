"""Log-ins are limited per client IP (in memory), and the IP is the TCP peer unless the
peer is a configured trusted proxy, whose X-Forwarded-For then names the client."""

from __future__ import annotations

from pathlib import Path

from tests.backend.limits_fixtures import (
    assert_rate_limited,
    client_of,
    login,
    settings_with,
    signup,
)


def test_the_fourth_login_from_one_address_is_refused(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, login_rate_per_ip="3/minute")
    with client_of(settings) as client:
        assert signup(client, "a@example.com").status_code == 201
        for _ in range(3):
            assert login(client, "a@example.com").status_code == 200
        refused = login(client, "a@example.com")
        assert_rate_limited(refused, "log-ins from your address")
        assert "3 per minute" in refused.json()["detail"]
        # A forged X-Forwarded-For from an untrusted peer changes nothing.
        assert (
            login(client, "a@example.com", **{"X-Forwarded-For": "198.51.100.9"}).status_code == 429
        )


def test_clients_behind_a_trusted_proxy_are_told_apart(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, login_rate_per_ip="2/minute", trusted_proxies=["10.0.0.0/8"])
    with client_of(settings, ip="10.1.2.3") as proxy:
        assert signup(proxy, "b@example.com").status_code == 201
        hostile = {"X-Forwarded-For": "198.51.100.66"}
        # The client wrote the left entry itself; the proxy appended the address it saw.
        spoofing = {"X-Forwarded-For": "192.0.2.1, 198.51.100.66"}
        assert login(proxy, "b@example.com", **hostile).status_code == 200
        assert login(proxy, "b@example.com", **spoofing).status_code == 200
        assert_rate_limited(login(proxy, "b@example.com", **hostile), "from your address")
        honest = {"X-Forwarded-For": "198.51.100.77"}
        assert login(proxy, "b@example.com", **honest).status_code == 200
