"""`kumulus backend jobs` (kumulus/job_table.py) shows each job's runs, failures in a row
and lease holder, from the backend's /metrics."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from kumulus.backend import leases
from kumulus.backend.app import create_app
from kumulus.config import BackendSettings
from kumulus.job_table import parse, render


def test_the_table_shows_runs_failures_and_holders(tmp_path: Path) -> None:
    app = create_app(BackendSettings(data_dir=tmp_path / "backend"))
    try:
        app.state.jobs.run_now("prune")
        with app.state.db.session() as s:  # another replica runs the meter now
            assert leases.acquire(s, "meter", "other-host:4242:ab12cd34", ttl=60)
        text = TestClient(app, client=("127.0.0.1", 4000)).get("/metrics").text
    finally:
        app.state.db.engine.dispose()
    rows = parse(text)
    assert rows["prune"].runs == 1 and rows["prune"].failures == 0
    assert rows["meter"].holders == ["other-host:4242:ab12cd34"]
    table = render(rows, now=rows["prune"].last_success or 0)
    prune = next(line for line in table.splitlines() if line.startswith("prune"))
    assert prune.split()[:4] == ["prune", "1", "0", "0"]
    assert "other-host:4242:ab12cd34" in table


def test_a_released_lease_still_names_the_replica_that_ran_it_last(tmp_path: Path) -> None:
    app = create_app(BackendSettings(data_dir=tmp_path / "backend"))
    try:
        runner = app.state.jobs
        # prune releases its lease when the run ends: nobody holds it afterwards. reputation's
        # lease is its schedule: it lasts the interval, held in the name of this run.
        runner.run_now("prune")
        runner.run_now("reputation")
        text = TestClient(app, client=("127.0.0.1", 4000)).get("/metrics").text
    finally:
        app.state.db.engine.dispose()
    rows = parse(text)
    assert rows["prune"].holders == [] and rows["prune"].last_holder == runner.owner
    [interval] = rows["reputation"].holders
    assert interval.startswith(f"{runner.owner}~")  # this process's run
    prune = next(line for line in render(rows).splitlines() if line.startswith("prune"))
    assert prune.endswith(f"(last: {runner.owner})")
