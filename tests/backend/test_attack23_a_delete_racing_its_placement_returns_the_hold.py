"""A VM deleted while it is being placed must give its whole prepaid hold back.

`billing.lock_vms` reads the VMs' hosts (whose provider accounts it locks, and which
`settle` needs to post usage) from the VM objects as the caller loaded them, before it
locks and re-reads the VMs. A delete request loads the VM (unplaced: no host yet), then
`VMService._settle` locks its balances, waiting for the placement that holds them; the
placement commits (host, hold); the re-read VM now has a host, but the hosts read before
the lock do not know it, so `settle` finds no provider and returns before sizing the hold
("deleted": release everything). The delete is recorded and the VM's hold stays where it
is: a deleted VM is never settled again, so the developer lost it.

Reachable on both databases: the delete's session only needs to have loaded the VM before
the placement committed (a list of VMs while a create is placing, or a re-placement after a
host refused the create). Not introduced by the hold-account change: the same on 7d83ad1."""

from __future__ import annotations

from pathlib import Path

from bench.common import GIB
from bench.scheduler import Size
from sqlalchemy import func, select
from substrateinterface import Keypair

from kumulus.backend.ledger import HOLD, HOLD_PROMO
from kumulus.backend.models import VM, Balance
from kumulus.backend.vms import VMService
from tests.backend.placement_fixtures import placing


def test_a_vm_loaded_before_its_placement_and_deleted_after_holds_nothing(
    database_url: str, tmp_path: Path
) -> None:
    size = Size(cpu=1.0, memory=GIB, disk=10 * GIB)
    with placing(database_url, tmp_path, 2, 1, size, 1) as p:
        vm_id = p.vms[0]
        with p.db.session() as request:
            # The delete request has the VM, as it was before its placement committed.
            doomed = request.get(VM, vm_id)
            assert doomed is not None and doomed.host_id is None
            request.commit()
            with p.db.session() as placer:
                placed = p.place(placer, [vm_id])
                placer.commit()
            assert isinstance(placed[0], str), placed
            with p.db.session() as s:
                held = s.scalar(
                    select(func.sum(Balance.amount)).where(
                        Balance.account_type.in_((HOLD, HOLD_PROMO)), Balance.account_key == vm_id
                    )
                )
            assert held, "the placement took no hold"
            VMService(request, p.settings, Keypair.create_from_uri("//Alice")).delete(doomed)

        with p.db.session() as s:
            gone = s.get(VM, vm_id)
            assert gone is not None and gone.intended_state == "deleted"
            stuck = s.scalar(
                select(func.coalesce(func.sum(Balance.amount), 0)).where(
                    Balance.account_type.in_((HOLD, HOLD_PROMO)), Balance.account_key == vm_id
                )
            )
        assert stuck == 0, f"a deleted VM still holds {stuck} planck of its developer's money"
