"""Alembic environment: always run programmatically by elasticcode.db.schema on a given connection."""

from alembic import context

from elasticcode.db.model import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
