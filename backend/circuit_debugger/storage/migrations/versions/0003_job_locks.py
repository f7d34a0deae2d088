"""Job folder locks: one writer per mining/training job folder across every replica (a second
submission while the first runs is a 409 naming it; a dead replica's lock is taken over)."""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table("job_locks",
                    sa.Column("folder", sa.Text, primary_key=True),
                    sa.Column("job", sa.Text, nullable=False),
                    sa.Column("acquired", sa.Float, nullable=False))


def downgrade() -> None:
    op.drop_table("job_locks")
