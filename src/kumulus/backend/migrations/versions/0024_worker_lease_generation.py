"""worker_leases.generation: a token that changes whenever a lease changes hands

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-03 09:00:00

Job leases are short and renewed while a job runs (core/jobs.py). A holder that stalled
past its lease may still be running when another replica takes over; its renewals and its
commits carry the generation it was given, so they fail once the lease has moved on
(backend/lease_fence.py).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "worker_leases",
        sa.Column("generation", sa.Integer(), nullable=False, server_default="1"),
    )


def downgrade() -> None:
    with op.batch_alter_table("worker_leases") as batch:
        batch.drop_column("generation")
