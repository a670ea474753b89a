"""Failed log-ins are counted per account in the database: every backend replica counts
against the same budget, whatever address the guesses come from, and once it is spent
even the right password waits (nothing is hashed meanwhile)."""

from __future__ import annotations

from pathlib import Path

from tests.backend.limits_fixtures import (
    assert_rate_limited,
    client_of,
    login,
    settings_with,
    signup,
)


def test_guesses_spread_over_replicas_and_addresses_share_one_budget(
    tmp_path: Path, database_url: str
) -> None:
    settings = settings_with(tmp_path, database_url, login_failures_per_account="3/hour")
    with (
        client_of(settings, ip="198.51.100.1") as replica_a,
        client_of(settings, ip="198.51.100.2") as replica_b,
    ):
        assert signup(replica_a, "victim@example.com").status_code == 201
        assert signup(replica_a, "bystander@example.com").status_code == 201
        assert login(replica_a, "victim@example.com", "wrong guess 1").status_code == 401
        assert login(replica_b, "victim@example.com", "wrong guess 2").status_code == 401
        # Successful log-ins do not spend the budget.
        assert login(replica_b, "victim@example.com").status_code == 200
        assert login(replica_a, "VICTIM@example.com ", "wrong guess 3").status_code == 401
        refused = login(replica_b, "victim@example.com")
        assert_rate_limited(refused, "failed log-ins for this account")
        assert "3 per hour" in refused.json()["detail"]
        assert 3000 < int(refused.headers["Retry-After"]) <= 3600
        # Other accounts are untouched; unknown emails are counted like known ones.
        assert login(replica_a, "bystander@example.com").status_code == 200
        for _ in range(3):
            assert login(replica_a, "nobody@example.com", "guess").status_code == 401
        assert login(replica_a, "nobody@example.com", "guess").status_code == 429
