"""Log lines with the engine's timestamps, for "the lines after this one" (`since`
markers): a marker is the RFC 3339 time of the last line seen, as the host wrote it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Query
from pydantic import AfterValidator

# What a marker looks like: Docker's RFC3339Nano in UTC (at most 9 fraction digits).
MARKER = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$"
_MARKER = re.compile(MARKER)


@dataclass(frozen=True)
class LogChunk:
    """Console output and the marker of its last line (None: no line carried a time)."""

    text: str
    until: str | None


def _instant(marker: str) -> tuple[str, int]:
    # Sortable whatever the number of fraction digits Docker wrote: (seconds, nanoseconds).
    seconds, _, fraction = marker[:-1].partition(".")
    return seconds, int(fraction.ljust(9, "0")) if fraction else 0


def epoch(marker: str) -> float:
    """The marker as a Unix time (to the microsecond, rounded down: what the engine's own
    `since` filter takes; `after` drops the lines it then repeats)."""
    seconds, nanos = _instant(marker)
    start = datetime.strptime(seconds, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return start.timestamp() + (nanos // 1000) / 1e6


def is_marker(value: str) -> bool:
    return bool(_MARKER.fullmatch(value))


def checked(value: str | None) -> str | None:
    """`value` when it is a marker of a real time after the Unix epoch (what the engine's
    `since` takes), else ValueError: the pattern alone lets "2024-13-45T99:99:99Z" by. For
    the `since` query parameters (a 422 rather than an error deep in the driver)."""
    if value is None:
        return None
    try:
        valid = is_marker(value) and epoch(value) > 0
    except (ValueError, OverflowError):
        valid = False
    if not valid:
        raise ValueError("since must be an RFC 3339 UTC time after 1970 (an earlier `until`)")
    return value


def after(stamped: str, since: str | None) -> LogChunk:
    """Lines of `stamped` ("<RFC 3339 time> <line>" each, as `docker logs --timestamps`
    prints them) written after `since`, without their times, and the last one's time (or
    `since` when there is none)."""
    floor = _instant(since) if since else None
    kept: list[str] = []
    until = since
    for line in stamped.splitlines(keepends=True):
        stamp, _, rest = line.partition(" ")
        if not is_marker(stamp):  # a line without a time (cannot happen with Docker)
            kept.append(line)
            continue
        if floor is not None and _instant(stamp) <= floor:
            continue
        kept.append(rest)
        until = stamp
    return LogChunk("".join(kept), until)


# The query parameters of a logs route (the agent's and the backend's take the same):
# how many last lines, and the marker of an earlier answer to continue after.
LogTail = Annotated[int, Query(ge=1, le=10000)]
LogSince = Annotated[str | None, Query(pattern=MARKER, max_length=40), AfterValidator(checked)]
