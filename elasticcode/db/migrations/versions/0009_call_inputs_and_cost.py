"""call inputs, replays and cost

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

- `inputs`: the call's arguments and keyword arguments as JSON (`{"args": [...], "kwargs": {...}}`),
  kept up to a configurable size so the call can be replayed; NULL when too large or not recorded.
- `replay_of`: the call this one replays (`flow call replay`), NULL otherwise.
- `cpu_seconds`, `peak_memory`: what the function used, measured in the pool process around the
  call (CPU seconds of the process; peak resident bytes during the call).
- `commit`: the git commit of the code the call ran (what a replay runs again).
- plug `max_queued`, `max_bytes`: back pressure bounds on the target's queue (NULL: unbounded).
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("call", sa.Column("inputs", JSONB(), nullable=True))
    op.add_column("call", sa.Column("replay_of", sa.Uuid(as_uuid=False), nullable=True))
    op.add_column("call", sa.Column("cpu_seconds", sa.Float(), nullable=True))
    op.add_column("call", sa.Column("peak_memory", sa.BigInteger(), nullable=True))
    op.add_column("call", sa.Column("commit", sa.String(64), nullable=True))
    op.add_column("plug", sa.Column("max_queued", sa.Integer(), nullable=True))
    op.add_column("plug", sa.Column("max_bytes", sa.BigInteger(), nullable=True))
    op.create_check_constraint(op.f("ck_plug_bounds"), "plug", "(max_queued IS NULL OR max_queued > 0) AND "
                               "(max_bytes IS NULL OR max_bytes > 0)")
    op.create_index("ix_call_replay_of", "call", ["replay_of"])


def downgrade() -> None:
    op.drop_index("ix_call_replay_of", table_name="call")
    op.drop_constraint(op.f("ck_plug_bounds"), "plug", type_="check")
    for column in ("max_bytes", "max_queued"):
        op.drop_column("plug", column)
    for column in ("commit", "peak_memory", "cpu_seconds", "replay_of", "inputs"):
        op.drop_column("call", column)
