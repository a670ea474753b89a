"""Every metric the Grafana dashboard (deploy/grafana/kumulus.json) and the alert rules
(deploy/prometheus/kumulus-alerts.yml) query is one the backend or the agent exposes: the
names are read from the real apps' registries, so a renamed metric fails here instead of
leaving an empty panel or an alert that can never fire."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from kumulus.backend import settlement_state
from kumulus.backend.app import create_app
from kumulus.backend.clock import utcnow
from kumulus.backend.models import SettlementState
from tests.backend.limits_fixtures import settings_with

DEPLOY = Path(__file__).parents[2] / "deploy"
METRIC = re.compile(r"\bkumulus_[a-z0-9_]+\b")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
}


def _sample_names(registry: CollectorRegistry) -> set[str]:
    names: set[str] = set()
    for family in registry.collect():
        names |= {sample.name for sample in family.samples}
        names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
    return names


@pytest.fixture
def exposed(tmp_path: Path, fake_agent: TestClient) -> Iterator[set[str]]:
    """The sample names both apps can expose. The chain head is set, as the deposits
    job would, since the lag metric is absent while settlement has not scanned."""
    with TestClient(create_app(settings_with(tmp_path))) as backend:
        db = backend.app.state.db  # type: ignore[attr-defined]
        with db.session() as s:
            s.add(SettlementState(name=settlement_state.CHAIN_HEAD, value="7", since=utcnow()))
            s.commit()
        yield _sample_names(backend.app.state.metrics) | _sample_names(  # type: ignore[attr-defined]
            fake_agent.app.state.metrics  # type: ignore[attr-defined]
        )


def _dashboard_queries() -> list[str]:
    board = json.loads((DEPLOY / "grafana" / "kumulus.json").read_text())
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len(panels) >= 15  # the file was read
    return [t["expr"] for p in panels for t in p["targets"]]


def _alert_queries() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "kumulus-alerts.yml").read_text())
    return [r["expr"] for group in rules["groups"] for r in group["rules"]]


@pytest.mark.parametrize("queries", [_dashboard_queries, _alert_queries], ids=["grafana", "alerts"])
def test_every_queried_metric_is_exposed(queries: object, exposed: set[str]) -> None:
    used = {name for expr in queries() for name in METRIC.findall(expr)}  # type: ignore[operator]
    assert used, "no metric found in the queries"
    assert sorted(used - exposed) == []


def test_the_dashboard_covers_what_operators_watch() -> None:
    used = {name for expr in _dashboard_queries() for name in METRIC.findall(expr)}
    for wanted in (
        "kumulus_http_request_duration_seconds_bucket",  # latency by route
        "kumulus_http_request_duration_seconds_count",  # 5xx rate
        "kumulus_placements_total",
        "kumulus_placement_refusals_total",
        "kumulus_heartbeats_total",
        "kumulus_job_failures_total",
        "kumulus_payouts",
        "kumulus_chain_head_lag_blocks",
        "kumulus_agent_vms",
        "kumulus_agent_create_to_ssh_seconds_bucket",
    ):
        assert wanted in used, wanted


def test_every_scrape_job_an_alert_names_is_configured() -> None:
    """An alert on a scrape job that scrape.yml does not define can never fire."""
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "scrape.yml").read_text())
    defined = {job["job_name"] for job in scrape["scrape_configs"]}
    named: set[str] = set()
    for expr in _alert_queries():
        for value in re.findall(r'\bjob=~?"([^"]+)"', expr):
            named |= set(value.split("|"))
    assert "kumulus-readyz" in named  # the file was read
    assert sorted(named - defined) == []
    assert {"kumulus-readyz", "kumulus-backend"} <= defined
