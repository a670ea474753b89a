"""A fake agent for the VM-intent tests: it does what it is asked, or, while `away`, does
not answer at all (a timeout), recording every call it got."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, ClassVar

from kumulus.client import ApiError


class AwayAgent:
    away: ClassVar[bool] = False
    calls: ClassVar[list[str]] = []

    def __init__(self, *_: Any) -> None:
        pass

    @classmethod
    def reset(cls) -> None:
        cls.away, cls.calls = False, []

    def _answer(self, call: str, vm_id: str, status: str) -> SimpleNamespace:
        AwayAgent.calls.append(call)
        if AwayAgent.away:
            raise ApiError("the agent did not answer within 90 s", None, "timeout", retry=True)
        return SimpleNamespace(
            vm_id=vm_id, ssh_port=2222, status=status, host_key=None, disk_used_bytes=None
        )

    def create_vm(self, body: dict[str, Any], idempotency_key: str) -> SimpleNamespace:
        return self._answer("create", "agent-" + idempotency_key, "Running")

    def start_vm(self, vm_id: str) -> SimpleNamespace:
        return self._answer("start", vm_id, "Running")

    def stop_vm(self, vm_id: str) -> SimpleNamespace:
        return self._answer("stop", vm_id, "Stopped")

    def delete_vm(self, vm_id: str) -> None:
        self._answer("delete", vm_id, "")
