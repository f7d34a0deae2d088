"""Alembic environment: always called from `storage.migrate` with an open connection."""

from alembic import context

from circuit_debugger.storage.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
