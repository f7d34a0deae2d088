"""Shares and prompt sets: the schema the server used before Alembic. A database made then
already has some of these tables (same columns; the start-up check refuses other columns), so
only the missing ones are created."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    have = set(sa.inspect(op.get_bind()).get_table_names())
    for name in ("investigations", "promptsets"):
        if name in have:
            continue
        op.create_table(name,
                        sa.Column("id", sa.Text, primary_key=True),
                        sa.Column("created", sa.Float, nullable=False),
                        sa.Column("version", sa.Integer, nullable=False),
                        sa.Column("state", sa.Text, nullable=False),
                        sqlite_with_rowid=False)


def downgrade() -> None:
    for name in ("investigations", "promptsets"):
        op.drop_table(name)
