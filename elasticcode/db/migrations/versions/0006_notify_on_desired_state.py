"""notify agents of changes to the desired state only, not of their own status writes

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23

With 0002 every UPDATE of a processor, socket or plug woke every agent, including the agents'
own writes of `status`, `status_message` and `lastupdated` (the only columns the service role may
update). On a cluster each node writes its own status message to a processor ("2 running"), so
the nodes woke each other in a loop: every agent reconciled, and fetched branch-following
repositories, several times a second. Now an UPDATE notifies only when some other column
changed (a row trigger whose WHEN compares the rows without those columns); INSERT, DELETE and
TRUNCATE notify as before.
"""
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TABLES = ("processor", "socket", "plug", "queue", "task")
STATUS = "ARRAY['status', 'status_message', 'lastupdated']"


def upgrade() -> None:
    for table in TABLES:
        op.execute(f'DROP TRIGGER IF EXISTS notify_network ON "{table}"')
        op.execute(
            f'CREATE TRIGGER notify_network AFTER INSERT OR DELETE OR TRUNCATE ON "{table}" '
            "FOR EACH STATEMENT EXECUTE FUNCTION elasticcode_notify_network()"
        )
        op.execute(
            f'CREATE TRIGGER notify_network_update AFTER UPDATE ON "{table}" FOR EACH ROW '
            f"WHEN (to_jsonb(OLD) - {STATUS} IS DISTINCT FROM to_jsonb(NEW) - {STATUS}) "
            "EXECUTE FUNCTION elasticcode_notify_network()"
        )


def downgrade() -> None:
    for table in TABLES:
        op.execute(f'DROP TRIGGER IF EXISTS notify_network_update ON "{table}"')
        op.execute(f'DROP TRIGGER IF EXISTS notify_network ON "{table}"')
        op.execute(
            f'CREATE TRIGGER notify_network AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON "{table}" '
            "FOR EACH STATEMENT EXECUTE FUNCTION elasticcode_notify_network()"
        )
