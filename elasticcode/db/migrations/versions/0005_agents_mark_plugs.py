"""agents mark plugs whose bound argument the target function does not take

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

The agent imports the target's module in its venv and knows its parameters; a plug bound to an
argument the function does not take gets status `error` with the reason (and is left out of the
routes), instead of every call it makes failing later with a TypeError. The service role may
write the status columns of plugs, as it already may of processors and sockets, and no others.
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("plug", sa.Column("status_message", sa.Text(), nullable=True))
    op.execute('GRANT UPDATE (status, status_message, lastupdated) ON "plug" TO elasticcode_service')


def downgrade() -> None:
    op.execute('REVOKE UPDATE (status, status_message, lastupdated) ON "plug" FROM elasticcode_service')
    op.drop_column("plug", "status_message")
