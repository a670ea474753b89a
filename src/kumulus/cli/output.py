"""How commands print: tables and fields for people, the API's JSON with --json. Text
from the server is shown without control characters (no terminal escapes)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ValidationError

JsonFlag = Annotated[
    bool, typer.Option("--json", help="print the API's JSON (field names as the API's)")
]


def printable(value: object, limit: int = 300) -> str:
    """Server text as one safe cell: every non-printable character shown as '?'."""
    return "".join(ch if ch.isprintable() else "?" for ch in str(value))[:limit]


def as_data(value: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> Any:
    """A model (or list of them) as the API's JSON shape."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, dict):
        return value
    return [item.model_dump(mode="json", by_alias=True) for item in value]


def emit_json(value: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> None:
    typer.echo(json.dumps(as_data(value), indent=2))


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> None:
    """Rows (API field names -> values) under column titles; '-' for no value."""
    cells = [
        [printable(row.get(key) if row.get(key) is not None else "-") for key, _ in columns]
        for row in rows
    ]
    widths = [
        max([len(title)] + [len(r[i]) for r in cells]) for i, (_, title) in enumerate(columns)
    ]
    typer.echo(
        "  ".join(title.ljust(w) for (_, title), w in zip(columns, widths, strict=True)).rstrip()
    )
    for r in cells:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def fields(pairs: Sequence[tuple[str, object]]) -> None:
    """`name:  value` lines, aligned."""
    width = max([10] + [len(name) + 1 for name, _ in pairs])
    for name, value in pairs:
        typer.echo(f"{name + ':':<{width}} {printable('-' if value is None else value)}")


def invalid(error: ValidationError) -> str:
    """What is wrong with the values given, in one line ("memory: ...; disk: ...")."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}"
        for e in error.errors(include_url=False)[:3]
    )
