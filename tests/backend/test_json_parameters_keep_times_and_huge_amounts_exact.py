"""The JSON documents batched statements take (`ledger.pg_json`, read by
json_to_recordset on PostgreSQL) keep what they carry exact: a naive datetime is UTC, an
aware one keeps its offset, an integer past 64 bits (an amount of planck) is written in
full rather than refused or rounded, and a value with no JSON form is an error."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from kumulus.backend.ledger import pg_json

BIG = 2**100 + 7


def test_times_and_integers_round_trip() -> None:
    naive = datetime(2026, 12, 1, 15, 0, 0, 123456)
    paris = datetime(2026, 12, 1, 16, 0, 0, tzinfo=timezone(timedelta(hours=1)))
    rows = [{"t": naive, "u": paris, "n": 10**18, "f": 3.0, "s": None, "b": True}]
    [out] = json.loads(pg_json(rows))
    assert datetime.fromisoformat(out["t"]) == naive.replace(tzinfo=UTC)
    assert datetime.fromisoformat(out["u"]) == paris
    assert out["n"] == 10**18 and out["f"] == 3.0 and out["s"] is None and out["b"] is True


def test_an_integer_past_64_bits_is_written_in_full() -> None:
    rows = [{"a": BIG, "t": datetime(2026, 1, 1)}]
    [out] = json.loads(pg_json(rows))
    assert out["a"] == BIG
    assert datetime.fromisoformat(out["t"]).utcoffset() == timedelta(0)


def test_a_value_without_a_json_form_is_an_error() -> None:
    with pytest.raises(TypeError):
        pg_json([{"x": object()}])
