"""The stages a VM goes through while it comes up, as the VM page shows them (placed on a
host, starting, waiting for SSH, running), read from the states the backend keeps: a VM
is `pending` until its host answers the create (the host creates and starts it and waits
for sshd's banner), `starting` when the host answered before sshd did."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from kumulus.backend.schemas import VMOut

Progress = Literal["done", "current", "todo"]


@dataclass(frozen=True)
class Stage:
    label: str
    progress: Progress


def create_stages(vm: VMOut) -> list[Stage] | None:
    """The stages of a VM meant to run that is not running yet; None otherwise (running,
    stopped, failed, unreachable: the page says so without stages)."""
    if vm.intended_state != "running" or vm.actual_state not in ("pending", "starting"):
        return None
    placed = vm.host_id is not None
    started = vm.actual_state == "starting"
    first: Stage = (
        Stage(f"Placed on host {vm.host_id}", "done")
        if placed
        else Stage("Placing on a host", "current")
    )
    return [
        first,
        Stage("Starting", "done" if started else "current" if placed else "todo"),
        Stage("Waiting for SSH", "current" if started else "todo"),
        Stage("Running", "todo"),
    ]
