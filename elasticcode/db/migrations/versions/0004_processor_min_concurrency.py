"""processor minimum concurrency

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23

Placement is no longer a reservation of `concurrency` CPUs: every processor placed on a node
runs, `concurrency` is the most pool processes it may have busy there, and `min_concurrency` the
fewest it keeps when idle (default 0: a process is started when a call comes). The agent shares
the node's CPUs among the busy processes (`kernel_agent/scaling.py`).

Rights need nothing new: users hold table-level INSERT/UPDATE on `processor` and the row policies
of 0003 (UPDATE_PROCESSOR on one's own rows) cover every column, so whoever may change `-c` may
change `--min`; the service role reads every column and still updates only the status columns.
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("processor", sa.Column("min_concurrency", sa.Integer(), server_default="0", nullable=False))
    op.create_check_constraint(op.f("ck_processor_min_concurrency_range"), "processor",
                               "min_concurrency >= 0 AND min_concurrency <= concurrency")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_processor_min_concurrency_range"), "processor", type_="check")
    op.drop_column("processor", "min_concurrency")
