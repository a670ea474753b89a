"""The one parser for human sizes ("512m", "1g", "1.5G") used at every edge.

Units are binary, as Docker reads them: 1k = 1024 bytes, 1g = 1024**3 bytes.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_BYTES_RE = re.compile(r"^\s*(\d+)\s*b?\s*$", re.IGNORECASE)


class SizeError(ValueError):
    """Raised for a size that is not a positive amount with a known unit."""


def parse_size(value: str | int) -> int:
    """Return the size in bytes; raise SizeError with a message a user can act on."""
    if isinstance(value, bool):
        raise SizeError("size must be a string like '512m' or '1g'")
    if isinstance(value, int):
        if value <= 0:
            raise SizeError("size must be positive")
        return value
    if not isinstance(value, str) or len(value) > 32:
        raise SizeError("size must be a string like '512m' or '1g'")
    m = _BYTES_RE.match(value) or _SIZE_RE.match(value)
    if not m:
        raise SizeError(f"invalid size {value!r}: use a number and a unit, like '512m' or '1.5g'")
    number = m.group(1)
    unit = m.group(2).lower() if m.lastindex and m.lastindex >= 2 else ""
    try:
        amount = Decimal(number) * _UNITS[unit]
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only digits
        raise SizeError(f"invalid size {value!r}") from exc
    size = int(amount)
    if size <= 0:
        raise SizeError(f"invalid size {value!r}: must be more than zero")
    return size


def format_size(size: int) -> str:
    """Render bytes the way users write them: 1073741824 -> '1g', 1610612736 -> '1.5g'."""
    for unit in ("t", "g", "m", "k"):
        base = _UNITS[unit]
        if size >= base:
            amount = Decimal(size) / base
            text = f"{amount:.2f}".rstrip("0").rstrip(".")
            return f"{text}{unit}"
    return f"{size}b"


def gib(size: int) -> str:
    """Bytes as GiB for people: 10737418240 -> '10 GiB', 451936256 -> '0.42 GiB'."""
    text = f"{Decimal(size) / _UNITS['g']:.2f}".rstrip("0").rstrip(".")
    return f"{text} GiB"


def disk_usage_text(used: int | None, disk: int) -> str:
    """ "X GiB used of Y GiB (P %)" for a VM's disk, or that its host has not said yet."""
    if used is None:
        return f"{gib(disk)}, usage not reported yet by its host"
    percent = 100 * used / disk if disk else 0
    return f"{gib(used)} used of {gib(disk)} ({percent:.0f} %)"
