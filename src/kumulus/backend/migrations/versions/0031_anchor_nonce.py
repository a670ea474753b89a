"""An anchor's remark is sent with a nonce fixed before it goes out

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-01 04:40:00

An anchors job holder that lost its lease while its remark was on the way (stalled, or
killed before recording it) left the anchor pending, and the next holder sent the remark
again: the same root on chain twice, and a fee paid twice. Now the anchor's nonce of the
anchor key (which sends nothing else) and the finalized block before it are committed
first; every send of the anchor uses that nonce, so the chain includes at most one, and a
later holder that finds the nonce used looks the remark up from `from_block` on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("anchors", sa.Column("nonce", sa.BigInteger(), nullable=True))
    op.add_column("anchors", sa.Column("from_block", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("anchors") as batch:
        batch.drop_column("from_block")
        batch.drop_column("nonce")
