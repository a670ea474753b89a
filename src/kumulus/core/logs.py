"""Process logging: plain text by default, one JSON object per line with
`KUMULUS_LOG_FORMAT=json` (python-json-logger), each record carrying the request id of the
request it belongs to (core/request_ids.py)."""

from __future__ import annotations

import logging
import os
import sys

from pythonjsonlogger.json import JsonFormatter

from kumulus.core.request_ids import RequestIdFilter

TEXT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
FORMATS = ("text", "json")


def formatter(kind: str) -> logging.Formatter:
    """The formatter for `kind` ("text" or "json"); ValueError for anything else."""
    if kind == "json":
        return JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(request_id)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    if kind == "text":
        return logging.Formatter(TEXT)
    raise ValueError(f"KUMULUS_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {kind!r}")


def configure(kind: str | None = None, level: int = logging.INFO) -> None:
    """Log to stderr in `kind` (default: `KUMULUS_LOG_FORMAT`, else text), replacing the
    root logger's handlers (uvicorn's own loggers propagate to it with log_config=None)."""
    kind = (kind or os.environ.get("KUMULUS_LOG_FORMAT") or "text").strip().lower()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(kind))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
