"""A placement request names its VM's developer (`PlaceRequest.account_id`): the placer
locks that developer's balances before it reads the VM's row, instead of reading every
VM's owner first. A request whose VM belongs to another developer is refused and changes
nothing: its hold would otherwise be decided on balances that are not the ones locked
(another developer's money), or fail the whole batch on an account not locked."""

from __future__ import annotations

from pathlib import Path

from bench.common import GIB
from bench.scheduler import Size, place_requests
from sqlalchemy import select

from kumulus.backend import ledger, ledger_check
from kumulus.backend.models import VM, Balance, Host
from kumulus.backend.vms import PlaceRequest, place_vms
from kumulus.core.errors import ConflictError
from tests.backend.placement_fixtures import placing

SIZE = Size(cpu=1.0, memory=GIB, disk=10 * GIB)


def test_a_request_naming_another_developer_is_refused(database_url: str, tmp_path: Path) -> None:
    with placing(database_url, tmp_path, 2, 2, SIZE, 2) as p:
        mine, theirs = place_requests(p.db, p.vms)
        assert mine.account_id != theirs.account_id
        wrong = PlaceRequest(mine.vm_id, theirs.account_id, frozenset())
        with p.db.session() as s:
            out = place_vms(p.settings, s, [wrong, theirs], [False, False])
            s.commit()
        assert isinstance(out[0], ConflictError), out
        assert isinstance(out[1], str), out  # the rest of the batch is placed
        with p.db.session() as s:
            vm = s.get(VM, mine.vm_id)
            assert vm is not None and vm.host_id is None and not vm.reserved
            hold = s.scalar(
                select(Balance.amount).where(
                    Balance.account_type == ledger.HOLD, Balance.account_key == mine.vm_id
                )
            )
            assert hold is None
            reserved = sum(h.reserved_cpu for h in s.scalars(select(Host)))
            assert reserved == SIZE.cpu  # the other VM's only
            assert ledger_check.violations(s) == []
