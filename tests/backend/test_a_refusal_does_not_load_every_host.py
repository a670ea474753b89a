"""Why a VM does not fit (scheduler.explain) is counted by the database: a refusal is as
cheap to ask for as a create, so it must not read every online host into the process
(5,000 host rows cost 0.23 s per refusal). Every statement it makes on `hosts` is an
aggregate or bounded by a LIMIT, and its answers are the same as before."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event, update

from kumulus.backend.models import Host
from kumulus.backend.scheduler import Want, explain
from kumulus.core.money import GIB
from tests.backend.test_scheduler import _hosts


def test_explain_counts_in_the_database(backend: TestClient) -> None:
    ids = _hosts(backend, [(2, 4, "eu")] * 30 + [(8, 16, "eu")])
    db_: Any = backend.app.state.db  # type: ignore[attr-defined]
    with db_.session() as db:
        db.execute(update(Host).where(Host.id.in_(ids)).values(price_cpu_hour=1000))
        db.commit()
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    with db_.session() as db:
        engine = db.get_bind()
        event.listen(engine, "before_cursor_execute", seen)
        try:
            why = explain(db, Want(1, 20 * GIB, 1 * GIB, "eu"), 30)
            priced = explain(db, Want(1, 1 * GIB, 1 * GIB, "eu", max_price_hour=10), 30)
        finally:
            event.remove(engine, "before_cursor_execute", seen)
    assert why == (
        "no provider fits: 31 host(s) online in region eu, none has 20g memory "
        "(largest free is 16g) free"
    )
    assert priced.startswith("no provider fits: 31 host(s) online in region eu have room")
    assert "the cheapest costs 1000/h" in priced
    on_hosts = [s for s in statements if re.search(r"\bFROM hosts\b", s)]
    assert on_hosts
    for statement in on_hosts:
        assert re.search(r"\b(sum|max|count)\(", statement) or "LIMIT" in statement, statement
