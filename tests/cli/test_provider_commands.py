"""`provider host ls | show | price | drain | undrain`, `provider earnings` and `provider
payout ls | request`, human and --json, against the provider's real host."""

from __future__ import annotations

import json

from tests.cli.conftest import Cli
from tests.fuzz_platform import Platform


def test_hosts_prices_and_drain(provider: Cli, developer: Cli, live: Platform) -> None:
    hosts = provider.json("provider", "host", "ls")
    assert [h["id"] for h in hosts] == [live.host_id] and hosts[0]["draining"] is False
    assert live.host_id in provider("provider", "host", "ls").stdout
    assert provider.json("provider", "host", "show", live.host_id)["status"] == "online"
    assert "reputation:" in provider("provider", "host", "show", live.host_id).stdout
    assert provider("provider", "host", "show", "nope").returncode == 3

    prices = ["--cpu", "0.02", "--memory-gib", "0.01", "--disk-gib", "0.0001"]
    priced = provider.json("provider", "host", "price", live.host_id, *prices)
    assert priced["prices"] == {"cpu": "0.02", "memoryGib": "0.01", "diskGib": "0.0001"}
    bad = provider("provider", "host", "price", live.host_id,
                   "--cpu", "cheap", "--memory-gib", "1", "--disk-gib", "1")  # fmt: skip
    assert bad.returncode == 2

    try:
        drained = provider("provider", "host", "drain", live.host_id)
        assert drained.returncode == 0 and "is draining" in drained.stdout
        assert provider.json("provider", "host", "show", live.host_id)["draining"] is True
        refused = developer("vm", "create", "--username", "dev", "--memory", "512m")
        assert refused.returncode == 4 and "draining" in refused.stderr
    finally:
        undrained = provider.json("provider", "host", "undrain", live.host_id)
    assert undrained["draining"] is False


def test_earnings_and_payouts(provider: Cli) -> None:
    earnings = provider("provider", "earnings")
    assert earnings.returncode == 0, earnings.stderr
    assert "withdrawable:" in earnings.stdout and "not yet withdrawable:" in earnings.stdout
    view = provider.json("provider", "earnings")
    assert {"balance", "promo", "promoPaid", "perHour"} <= view.keys()
    assert provider.json("provider", "payout", "ls") == []
    # No chain configured here: a payout request is a conflict (settlement off).
    refused = provider("provider", "payout", "request", "--json")
    assert refused.returncode == 4, refused.stderr
    assert json.loads(refused.stderr)["status"] == 409
