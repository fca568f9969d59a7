"""notify agents of network changes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21

Agents LISTEN on channel `elasticcode_network` and reconcile within a second of any change to
processors, sockets, plugs, queues or tasks (no polling).
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = ("processor", "socket", "plug", "queue", "task")


def upgrade() -> None:
    op.execute(
        """
        CREATE OR REPLACE FUNCTION elasticcode_notify_network() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('elasticcode_network', TG_TABLE_NAME);
            RETURN NULL;
        END $$
        """
    )
    for table in TABLES:
        op.execute(
            f'CREATE TRIGGER notify_network AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON "{table}" '
            "FOR EACH STATEMENT EXECUTE FUNCTION elasticcode_notify_network()"
        )


def downgrade() -> None:
    for table in TABLES:
        op.execute(f'DROP TRIGGER IF EXISTS notify_network ON "{table}"')
    op.execute("DROP FUNCTION IF EXISTS elasticcode_notify_network()")
