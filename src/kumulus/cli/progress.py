"""Stages of a long command (a VM being created): a spinner with the current stage on a
terminal, one plain line per stage otherwise (logs, CI, pipes)."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.status import Status

from kumulus.cli.output import printable


class Stages:
    """`with Stages() as stages: stages.show("starting")`: each new stage is printed once
    (to `stream`, stdout by default; --json commands pass stderr)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self._console = Console(file=self._stream, highlight=False)
        self._status: Status | None = None
        self._shown: str | None = None

    def __enter__(self) -> Stages:
        if self._stream.isatty():
            self._status = self._console.status("")
            self._status.start()
        return self

    def show(self, stage: str) -> None:
        stage = printable(stage)
        if stage == self._shown:
            return
        self._shown = stage
        if self._status is not None:
            self._status.update(stage)
        self._console.print(f"  {stage}", markup=False, soft_wrap=True)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._status is not None:
            self._status.stop()
