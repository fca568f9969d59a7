"""index calls by socket name

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23

`history(socket=...)` and `flow ls calls -tk SOCKET` filter calls by name (the socket's name
outlives the socket), newest first; without an index that was a scan of the whole table.
"""
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_call_name_created", "call", ["name", "created"])


def downgrade() -> None:
    op.drop_index("ix_call_name_created", table_name="call")
