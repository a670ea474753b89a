"""One job run gives each host a bounded time (two call deadlines): a host whose agent
answers every call, slowly, gets a few of its VMs done and the rest wait for the next
run, so the run ends and the other hosts' VMs are carried out meanwhile."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kumulus.backend.clock import utcnow
from kumulus.backend.converge import Outcome
from kumulus.backend.db import Database, migrate
from kumulus.backend.jobs import per_host
from kumulus.backend.models import VM
from kumulus.config import BackendSettings
from kumulus.core.signing import keypair_from_mnemonic, new_mnemonic
from tests.backend.billing_fixtures import account, host, vm

DEADLINE = 0.4


def test_a_slow_host_gets_a_bounded_share(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database = Database(f"sqlite:///{tmp_path / 'kumulus.db'}")
    migrate(database.engine)
    with database.session() as db:
        dev = account(db, "developer")
        slow, quick = host(db, account(db, "provider")), host(db, account(db, "provider"))
        rows = [(vm(db, dev, on, utcnow()).id, on.id) for on in (slow, quick) for _ in range(10)]
        slow_id = slow.id
        db.commit()
    tried: list[str] = []

    def converge(db: object, act: object, row: VM, action: str, first: float) -> Outcome:
        if row.host_id == slow_id:
            time.sleep(DEADLINE * 0.9)  # answers, each time just before the deadline
        tried.append(str(row.host_id))
        return Outcome.DONE

    monkeypatch.setattr(per_host, "converge", converge)
    settings = BackendSettings(data_dir=tmp_path / "backend", agent_call_deadline=DEADLINE)
    began = time.monotonic()
    done = per_host.on_each_host(database, settings, keypair_from_mnemonic(new_mnemonic()),
                                 rows, "stop")  # fmt: skip
    took = time.monotonic() - began
    slow_calls = tried.count(slow_id)
    assert 1 <= slow_calls <= per_host.HOST_BUDGET_CALLS + 1, tried
    assert len(tried) - slow_calls == 10  # every VM of the other host
    assert done == len(tried)
    assert took < (per_host.HOST_BUDGET_CALLS + 2) * DEADLINE, f"{took:.2f} s"
    database.engine.dispose()
