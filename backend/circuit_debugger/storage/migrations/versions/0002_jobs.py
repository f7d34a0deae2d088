"""Jobs: long work (dataset attribution, ablation over a set, circuit evaluation) with its
progress, cancellation flag, time limit and stored result."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table("jobs",
                    sa.Column("id", sa.Text, primary_key=True),
                    sa.Column("kind", sa.Text, nullable=False),
                    sa.Column("model", sa.Text, nullable=False),
                    sa.Column("status", sa.Text, nullable=False),
                    sa.Column("created", sa.Float, nullable=False),
                    sa.Column("updated", sa.Float, nullable=False),
                    sa.Column("deadline", sa.Float, nullable=False),
                    sa.Column("done", sa.Integer, nullable=False),
                    sa.Column("total", sa.Integer, nullable=False),
                    sa.Column("cancel", sa.Boolean, nullable=False),
                    sa.Column("request", sa.Text, nullable=False),
                    sa.Column("error", sa.Text),
                    sa.Column("result", sa.Text))


def downgrade() -> None:
    op.drop_table("jobs")
