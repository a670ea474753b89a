"""A host's isolation as the backend believes it: from the report in its signed
registration and heartbeats (kumulus.core.schemas.IsolationReport).

A host is isolated only when its report says "full" and each required part agrees; no
report at all (an agent from before isolation was required) is not isolated. What is missing
is kept in words of our own vocabulary, never in the provider's text."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from kumulus.core.errors import InvalidError
from kumulus.core.http import field_problems, validation_message
from kumulus.core.schemas import IsolationReport

NOT_REPORTED = "not reported by the agent (upgrade it)"


def judge(report: IsolationReport | None) -> tuple[bool, str | None]:
    """(isolated, what is missing for people, or None)."""
    if report is None:
        return False, NOT_REPORTED
    parts = {
        "userns-remap": report.userns_remap,
        "firewall": report.firewall,
        "disk-quota": report.disk_quota,
    }
    missing = sorted({*report.missing, *(name for name, ok in parts.items() if not ok)})
    if report.level == "full" and not missing:
        return True, None
    return False, "missing: " + (", ".join(missing) or "full isolation")


def parse(payload: dict[str, Any]) -> IsolationReport | None:
    """The payload's `isolation`, None when absent; InvalidError (422) when malformed."""
    raw = payload.get("isolation")
    if raw is None:
        return None
    try:
        return IsolationReport.model_validate(raw)
    except ValidationError as exc:
        problems = field_problems(exc.errors())
        raise InvalidError(
            f"invalid isolation report: {validation_message(problems)}", fields=problems
        ) from exc
