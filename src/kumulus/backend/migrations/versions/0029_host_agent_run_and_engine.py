"""A host's agent run and engine state, from its newest heartbeat

Revision ID: 0029
Revises: 0028
Create Date: 2026-11-30 20:40:00

The converge jobs back off from a host whose calls fail (up to 10 minutes). A host silent
for longer than the TTL gets its VMs tried at once when it is heard again; an agent
restarted, or a Docker engine restarted, within the TTL did not: their VMs waited out
the backoff. Heartbeats now carry the agent's run (a new id at each start) and already
carried whether the engine answered; the host row keeps both, and a change (a new run,
the engine back up) ends the backoff of the host's VMs like a return does.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("hosts", sa.Column("agent_run", sa.String(length=16), nullable=True))
    op.add_column("hosts", sa.Column("engine_up", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hosts") as batch_op:
        batch_op.drop_column("engine_up")
        batch_op.drop_column("agent_run")
