"""Room in the hosts' and uptime pages for heartbeat updates (PostgreSQL fillfactor)

Revision ID: 0026
Revises: 0025
Create Date: 2026-11-30 17:10:00

Every heartbeat updates its host's row and its uptime bucket. PostgreSQL keeps such an
update on the row's page without touching any index (a HOT update) only when the page has
room for the new version; full pages (fillfactor 100, the default) made nearly every one
a new tuple elsewhere plus an entry in each of the hosts' six indexes (measured: 66 HOT
updates of 6,000 on hosts, 179 of 3,000 on host_uptime; with room: 2,769 and 3,000, the
rest being each host's first heartbeat, which changes its indexed tier). Rows written from
now on leave the room; existing pages gain it as PostgreSQL prunes them (a `VACUUM FULL
hosts, host_uptime` in a quiet hour applies it at once). SQLite has no such setting.
"""

from __future__ import annotations

from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

# A host row is about 1 KiB (prices, capacity, keys, isolation and capacity verdicts):
# half a page free holds the next few versions until pruning reclaims the old ones.
HOSTS_FILLFACTOR = 50
UPTIME_FILLFACTOR = 70


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE hosts SET (fillfactor = {HOSTS_FILLFACTOR})")
        op.execute(f"ALTER TABLE host_uptime SET (fillfactor = {UPTIME_FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE hosts RESET (fillfactor)")
        op.execute("ALTER TABLE host_uptime RESET (fillfactor)")
