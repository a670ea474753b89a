"""Per-IP limits count an IPv6 client by its /64: one subscriber holds at least a /64
(2^64 addresses) and can use a new address for every request, which would make an
exact-address limit no limit. An IPv4 client written as IPv4-mapped IPv6 is the same
client."""

from __future__ import annotations

from pathlib import Path

from tests.backend.limits_fixtures import assert_rate_limited, client_of, login, settings_with


def _from(ip: str) -> dict[str, str]:
    return {"X-Forwarded-For": ip}  # what the trusted proxy saw


def test_addresses_of_one_64_share_a_budget(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, login_rate_per_ip="2/minute", trusted_proxies=["10.0.0.0/8"])
    with client_of(settings, ip="10.0.0.2") as proxy:
        assert login(proxy, "a@example.com", "guess", **_from("2001:db8:1:2::1")).status_code == 401
        assert login(proxy, "a@example.com", "guess", **_from("2001:db8:1:2::2")).status_code == 401
        refused = login(proxy, "a@example.com", "guess", **_from("2001:db8:1:2:abcd:ef::9"))
        assert_rate_limited(refused, "log-ins from your address")
        # Another /64 is another client.
        assert login(proxy, "a@example.com", "guess", **_from("2001:db8:1:3::1")).status_code == 401


def test_an_ipv4_mapped_address_is_its_ipv4_client(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, login_rate_per_ip="1/minute", trusted_proxies=["10.0.0.0/8"])
    with client_of(settings, ip="10.0.0.2") as proxy:
        assert login(proxy, "a@example.com", "guess", **_from("198.51.100.4")).status_code == 401
        refused = login(proxy, "a@example.com", "guess", **_from("::ffff:198.51.100.4"))
        assert_rate_limited(refused, "log-ins from your address")
