"""Audio seconds in the usage ledger (transcription batch lines are billed by audio, not tokens).

Revision ID: 0003_usage_audio_seconds
Revises: 0002_files_batches
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_usage_audio_seconds"
down_revision = "0002_files_batches"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_ledger") as batch:
        batch.add_column(sa.Column("audio_seconds", sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("usage_ledger") as batch:
        batch.drop_column("audio_seconds")
