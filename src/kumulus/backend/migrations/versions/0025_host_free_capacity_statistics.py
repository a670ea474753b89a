"""PostgreSQL statistics on the hosts' free capacity, so placements walk the index

Revision ID: 0025
Revises: 0024
Create Date: 2026-11-30 13:30:00

The scheduler's fit test compares free capacity (cpu - reserved_cpu, ...) with the VM's
size. Without statistics on those expressions PostgreSQL guesses a third of the hosts pass
each of the three comparisons (1/27 in all), so it expects few fitting hosts and reads and
sorts the whole table instead of walking the (tier, price, load) index to the first 64:
12 ms instead of 0.3 ms per placement over 5,000 hosts. Expression statistics (PostgreSQL 14+)
give it the real distribution at each ANALYZE. SQLite has no such thing and needs none.
"""

from __future__ import annotations

from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE STATISTICS IF NOT EXISTS hosts_free_capacity"
            " ON (cpu - reserved_cpu), (memory - reserved_memory), (disk - reserved_disk)"
            " FROM hosts"
        )
        op.execute("ANALYZE hosts")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP STATISTICS IF EXISTS hosts_free_capacity")
