"""A database with hosts, funded developers and unplaced VM rows (bench/scheduler's
`populate`), for tests that call the placer (`vms.place_vms`) directly."""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.scheduler import TTL, Size, place_requests, populate
from sqlalchemy.orm import Session

from kumulus.backend.db import Database, migrate
from kumulus.backend.group_commit import Retry
from kumulus.backend.vms import place_vms
from kumulus.config import BackendSettings


@dataclass
class Placing:
    db: Database
    settings: BackendSettings
    hosts: list[str]
    vms: list[str]  # unplaced, owned by the developers in turn

    def place(
        self, s: Session, ids: Sequence[str], last: bool = False
    ) -> list[str | BaseException | Retry]:
        """`place_vms` on `ids` in `s`'s transaction (the caller commits or rolls back)."""
        return place_vms(self.settings, s, place_requests(self.db, list(ids)), [last] * len(ids))


@contextmanager
def placing(
    database_url: str, tmp_path: Path, hosts: int, developers: int, size: Size, vms: int
) -> Iterator[Placing]:
    """A migrated database with `hosts` online priced hosts, `developers` funded developers
    and `vms` VM rows of `size`; its connections closed afterwards."""
    db = Database(database_url)
    try:
        migrate(db.engine)
        settings = BackendSettings(data_dir=tmp_path, database_url=database_url, heartbeat_ttl=TTL)
        suffix = secrets.token_hex(4)
        host_ids = [f"b{suffix}{i:07d}" for i in range(hosts)]
        vm_ids = populate(db, suffix, host_ids, developers, size, vms)
        yield Placing(db, settings, host_ids, vm_ids)
    finally:
        db.engine.dispose()
