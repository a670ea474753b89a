"""VMs whose create failed and that could not be removed at once.

A create that fails after the engine may have made its container (the engine died or
restarted mid-call, the VM died while starting) answers an error: the backend gives the VM
up on this host, so no request will ever name that container again. Removing it right
away is not always possible: the engine that failed the create is usually down. Its id is
kept here, in a file of the agent's state directory so that a restart does not forget it,
until the agent's `leftovers` job has removed it (left alone, it would hold a port and its
reservation against the host's capacity for ever, with the developer's key in it).

Not thread-safe: the service's create lock guards every use."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

from kumulus.core.schemas import VM_ID_RE

log = logging.getLogger(__name__)


class Leftovers:
    """A durable set of VM ids to remove."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._ids: set[str] = set()
        try:
            loaded = json.loads(path.read_text())
        except FileNotFoundError:
            loaded = []
        except (OSError, ValueError) as exc:
            # Unreadable: start empty (the start-up recovery still removes unstarted VMs).
            log.warning("ignoring %s: %s", path, exc)
            loaded = []
        if isinstance(loaded, list):
            # Only VM ids go to the engine (an edited file must not aim its calls at
            # other API paths).
            self._ids = {v for v in loaded if isinstance(v, str) and VM_ID_RE.fullmatch(v)}

    def __bool__(self) -> bool:
        return bool(self._ids)

    def __contains__(self, vm_id: object) -> bool:
        return vm_id in self._ids

    def ids(self) -> list[str]:
        return sorted(self._ids)

    def add(self, vm_id: str) -> None:
        if vm_id not in self._ids:
            self._ids.add(vm_id)
            self._save_or_warn()

    def discard(self, vm_id: str) -> None:
        if vm_id in self._ids:
            self._ids.discard(vm_id)
            self._save_or_warn()

    def _save_or_warn(self) -> None:
        """The set in memory is the truth while the agent runs: a state disk that is full
        or read-only must not fail a create's answer or the agent's start. The file is
        written again at the next change."""
        try:
            self._save()
        except OSError as exc:
            log.warning("could not record failed creates in %s: %s", self._path, exc)

    def _save(self) -> None:
        """Written whole to a temporary file, synced, then renamed over the old one: a
        crash leaves the old list or the new one, never half of one."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_name(self._path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(sorted(self._ids), out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self._path)
            # The rename itself survives a crash once the directory is synced.
            dir_fd = os.open(self._path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
