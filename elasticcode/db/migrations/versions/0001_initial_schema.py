"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-21 20:25:07.235152

Also sets up the security model: two group roles (elasticcode_user for people,
elasticcode_service for agents and recorders), table grants, and row-level security on
`owner` (ENABLEd and FORCEd) for every owned table. The SQL is static on purpose: a
migration is a snapshot and must not change when library code does.
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('file',
    sa.Column('path', sa.String(length=1000), nullable=True),
    sa.Column('filename', sa.String(length=255), nullable=True),
    sa.Column('collection', sa.String(length=255), nullable=True),
    sa.Column('code', sa.Text(), nullable=True),
    sa.Column('type', sa.String(length=40), nullable=True),
    sa.Column('icon', sa.String(length=40), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('requested_status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('description', sa.String(length=2000), nullable=True),
    sa.Column('id', sa.Uuid(as_uuid=False), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('owner', sa.String(length=63), server_default=sa.text('current_user'), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('lastupdated', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_file')),
    sa.UniqueConstraint('owner', 'name', name=op.f('uq_file_owner_name'))
    )
    op.create_index(op.f('ix_file_owner'), 'file', ['owner'], unique=False)
    op.create_table('log',
    sa.Column('oid', sa.Uuid(as_uuid=False), nullable=True),
    sa.Column('discriminator', sa.String(length=40), nullable=True),
    sa.Column('source', sa.String(length=255), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('public', sa.Boolean(), server_default='false', nullable=False),
    sa.Column('id', sa.Uuid(as_uuid=False), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('owner', sa.String(length=63), server_default=sa.text('current_user'), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('lastupdated', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_log'))
    )
    op.create_index(op.f('ix_log_oid'), 'log', ['oid'], unique=False)
    op.create_index(op.f('ix_log_owner'), 'log', ['owner'], unique=False)
    op.create_table('privilege',
    sa.Column('right', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('requested_status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('description', sa.String(length=2000), nullable=True),
    sa.Column('id', sa.Uuid(as_uuid=False), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('owner', sa.String(length=63), server_default=sa.text('current_user'), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('lastupdated', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_privilege')),
    sa.UniqueConstraint('owner', 'name', name=op.f('uq_privilege_owner_name')),
    sa.UniqueConstraint('right', name=op.f('uq_privilege_right'))
    )
    op.create_index(op.f('ix_privilege_owner'), 'privilege', ['owner'], unique=False)
    op.create_table('queue',
    sa.Column('qtype', sa.String(length=20), server_default='direct', nullable=False),
    sa.Column('durable', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('reliable', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('auto_delete', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('max_length', sa.Integer(), nullable=True),
    sa.Column('max_length_bytes', sa.BigInteger(), nullable=True),
    sa.Column('message_ttl', sa.Integer(), nullable=True),
    sa.Column('expires', sa.Integer(), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('requested_status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('description', sa.String(length=2000), nullable=True),
    sa.Column('id', sa.Uuid(as_uuid=False), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('owner', sa.String(length=63), server_default=sa.text('current_user'), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('lastupdated', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("qtype IN ('direct', 'topic', 'fanout')", name=op.f('ck_queue_qtype')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_queue')),
    sa.UniqueConstraint('owner', 'name', name=op.f('uq_queue_owner_name'))
    )
    op.create_index(op.f('ix_queue_owner'), 'queue', ['owner'], unique=False)
    op.create_table('role',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('requested_status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('description', sa.String(length=2000), nullable=True),
    sa.Column('id', sa.Uuid(as_uuid=False), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('owner', sa.String(length=63), server_default=sa.text('current_user'), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('lastupdated', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_role')),
    sa.UniqueConstraint('owner', 'name', name=op.f('uq_role_owner_name'))
    )
    op.create_index(op.f('ix_role_owner'), 'role', ['owner'], unique=False)
    op.create_table('scheduler',
    sa.Column('strategy', sa.String(length=20), server_default='BALANCED', nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('requested_status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('description', sa.String(length=2000), nullable=True),
    sa.Column('id', sa.Uuid(as_uuid=False), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('owner', sa.String(length=63), server_default=sa.text('current_user'), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('lastupdated', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("strategy IN ('BALANCED', 'EFFICIENT')", name=op.f('ck_scheduler_strategy')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scheduler')),
    sa.UniqueConstraint('owner', 'name', name=op.f('uq_scheduler_owner_name'))
    )
    op.create_index(op.f('ix_scheduler_owner'), 'scheduler', ['owner'], unique=False)
    op.create_table('settings',
    sa.Column('value', sa.Text(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('requested_status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('description', sa.String(length=2000), nullable=True),
    sa.Column('id', sa.Uuid(as_uuid=False), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('owner', sa.String(length=63), server_default=sa.text('current_user'), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('lastupdated', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_settings')),
    sa.UniqueConstraint('owner', 'name', name=op.f('uq_settings_owner_name'))
    )
    op.create_index(op.f('ix_settings_owner'), 'settings', ['owner'], unique=False)
    op.create_table('users',
    sa.Column('email', sa.String(length=255), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('requested_status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('description', sa.String(length=2000), nullable=True),
    sa.Column('id', sa.Uuid(as_uuid=False), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('owner', sa.String(length=63), server_default=sa.text('current_user'), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('lastupdated', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('email', name=op.f('uq_users_email')),
    sa.UniqueConstraint('owner', 'name', name=op.f('uq_users_owner_name'))
    )
    op.create_index(op.f('ix_users_owner'), 'users', ['owner'], unique=False)
    op.create_table('flow',
    sa.Column('file_id', sa.Uuid(as_uuid=False), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('requested_status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('description', sa.String(length=2000), nullable=True),
    sa.Column('id', sa.Uuid(as_uuid=False), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('owner', sa.String(length=63), server_default=sa.text('current_user'), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('lastupdated', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['file_id'], ['file.id'], name=op.f('fk_flow_file_id_file'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_flow')),
    sa.UniqueConstraint('owner', 'name', name=op.f('uq_flow_owner_name'))
    )
    op.create_index(op.f('ix_flow_owner'), 'flow', ['owner'], unique=False)
    op.create_table('node',
    sa.Column('hostname', sa.String(length=255), nullable=False),
    sa.Column('cpus', sa.Integer(), server_default='0', nullable=False),
    sa.Column('memsize', sa.BigInteger(), nullable=True),
    sa.Column('freemem', sa.BigInteger(), nullable=True),
    sa.Column('disksize', sa.BigInteger(), nullable=True),
    sa.Column('diskfree', sa.BigInteger(), nullable=True),
    sa.Column('cpuload', sa.Float(), nullable=True),
    sa.Column('scheduler_id', sa.Uuid(as_uuid=False), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('requested_status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('description', sa.String(length=2000), nullable=True),
    sa.Column('id', sa.Uuid(as_uuid=False), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('owner', sa.String(length=63), server_default=sa.text('current_user'), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('lastupdated', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['scheduler_id'], ['scheduler.id'], name=op.f('fk_node_scheduler_id_scheduler'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_node')),
    sa.UniqueConstraint('owner', 'name', name=op.f('uq_node_owner_name'))
    )
    op.create_index(op.f('ix_node_hostname'), 'node', ['hostname'], unique=False)
    op.create_index(op.f('ix_node_owner'), 'node', ['owner'], unique=False)
    op.create_table('role_privileges',
    sa.Column('role_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('privilege_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.ForeignKeyConstraint(['privilege_id'], ['privilege.id'], name=op.f('fk_role_privileges_privilege_id_privilege'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['role_id'], ['role.id'], name=op.f('fk_role_privileges_role_id_role'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('role_id', 'privilege_id', name=op.f('pk_role_privileges'))
    )
    op.create_table('user_privileges',
    sa.Column('user_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('privilege_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.ForeignKeyConstraint(['privilege_id'], ['privilege.id'], name=op.f('fk_user_privileges_privilege_id_privilege'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_privileges_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'privilege_id', name=op.f('pk_user_privileges'))
    )
    op.create_table('user_roles',
    sa.Column('user_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('role_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.ForeignKeyConstraint(['role_id'], ['role.id'], name=op.f('fk_user_roles_role_id_role'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_user_roles_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'role_id', name=op.f('pk_user_roles'))
    )
    op.create_table('versions',
    sa.Column('file_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('flow', sa.Text(), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('requested_status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('description', sa.String(length=2000), nullable=True),
    sa.Column('id', sa.Uuid(as_uuid=False), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('owner', sa.String(length=63), server_default=sa.text('current_user'), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('lastupdated', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['file_id'], ['file.id'], name=op.f('fk_versions_file_id_file'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_versions')),
    sa.UniqueConstraint('owner', 'name', name=op.f('uq_versions_owner_name'))
    )
    op.create_index(op.f('ix_versions_file_id'), 'versions', ['file_id'], unique=False)
    op.create_index(op.f('ix_versions_owner'), 'versions', ['owner'], unique=False)
    op.create_table('agent',
    sa.Column('hostname', sa.String(length=255), nullable=False),
    sa.Column('cpus', sa.Integer(), server_default='0', nullable=False),
    sa.Column('port', sa.Integer(), nullable=True),
    sa.Column('pid', sa.Integer(), nullable=True),
    sa.Column('heartbeat', sa.DateTime(timezone=True), nullable=True),
    sa.Column('node_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('requested_status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('description', sa.String(length=2000), nullable=True),
    sa.Column('id', sa.Uuid(as_uuid=False), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('owner', sa.String(length=63), server_default=sa.text('current_user'), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('lastupdated', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['node_id'], ['node.id'], name=op.f('fk_agent_node_id_node'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agent')),
    sa.UniqueConstraint('node_id', name=op.f('uq_agent_node_id')),
    sa.UniqueConstraint('owner', 'name', name=op.f('uq_agent_owner_name'))
    )
    op.create_index(op.f('ix_agent_owner'), 'agent', ['owner'], unique=False)
    op.create_table('processor',
    sa.Column('module', sa.String(length=255), nullable=False),
    sa.Column('gitrepo', sa.String(length=1000), nullable=False),
    sa.Column('branch', sa.String(length=255), nullable=True),
    sa.Column('commit', sa.String(length=64), nullable=True),
    sa.Column('gittag', sa.String(length=255), nullable=True),
    sa.Column('modulepath', sa.String(length=1000), nullable=True),
    sa.Column('requirements', sa.Text(), nullable=True),
    sa.Column('hostname', sa.String(length=255), nullable=True),
    sa.Column('concurrency', sa.Integer(), server_default='1', nullable=False),
    sa.Column('retries', sa.Integer(), nullable=True),
    sa.Column('timelimit', sa.Integer(), nullable=True),
    sa.Column('ratelimit', sa.String(length=20), nullable=True),
    sa.Column('beat', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('endpoint', sa.String(length=255), nullable=True),
    sa.Column('hasapi', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('status_message', sa.Text(), nullable=True),
    sa.Column('flow_id', sa.Uuid(as_uuid=False), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('requested_status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('description', sa.String(length=2000), nullable=True),
    sa.Column('id', sa.Uuid(as_uuid=False), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('owner', sa.String(length=63), server_default=sa.text('current_user'), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('lastupdated', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint('concurrency >= 1', name=op.f('ck_processor_concurrency_positive')),
    sa.ForeignKeyConstraint(['flow_id'], ['flow.id'], name=op.f('fk_processor_flow_id_flow'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_processor')),
    sa.UniqueConstraint('owner', 'name', name=op.f('uq_processor_owner_name'))
    )
    op.create_index(op.f('ix_processor_owner'), 'processor', ['owner'], unique=False)
    op.create_table('deployment',
    sa.Column('hostname', sa.String(length=255), nullable=False),
    sa.Column('cpus', sa.Integer(), server_default='1', nullable=False),
    sa.Column('processor_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('requested_status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('description', sa.String(length=2000), nullable=True),
    sa.Column('id', sa.Uuid(as_uuid=False), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('owner', sa.String(length=63), server_default=sa.text('current_user'), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('lastupdated', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['processor_id'], ['processor.id'], name=op.f('fk_deployment_processor_id_processor'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deployment')),
    sa.UniqueConstraint('owner', 'name', name=op.f('uq_deployment_owner_name'))
    )
    op.create_index(op.f('ix_deployment_owner'), 'deployment', ['owner'], unique=False)
    op.create_index(op.f('ix_deployment_processor_id'), 'deployment', ['processor_id'], unique=False)
    op.create_table('task',
    sa.Column('module', sa.String(length=255), nullable=False),
    sa.Column('function', sa.String(length=255), nullable=False),
    sa.Column('source', sa.Text(), nullable=True),
    sa.Column('processor_id', sa.Uuid(as_uuid=False), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('requested_status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('description', sa.String(length=2000), nullable=True),
    sa.Column('id', sa.Uuid(as_uuid=False), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('owner', sa.String(length=63), server_default=sa.text('current_user'), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('lastupdated', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['processor_id'], ['processor.id'], name=op.f('fk_task_processor_id_processor'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_task')),
    sa.UniqueConstraint('owner', 'name', name=op.f('uq_task_owner_name'))
    )
    op.create_index(op.f('ix_task_owner'), 'task', ['owner'], unique=False)
    op.create_index(op.f('ix_task_processor_id'), 'task', ['processor_id'], unique=False)
    op.create_table('argument',
    sa.Column('position', sa.Integer(), server_default='0', nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=True),
    sa.Column('task_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('requested_status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('description', sa.String(length=2000), nullable=True),
    sa.Column('id', sa.Uuid(as_uuid=False), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('owner', sa.String(length=63), server_default=sa.text('current_user'), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('lastupdated', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['task.id'], name=op.f('fk_argument_task_id_task'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_argument')),
    sa.UniqueConstraint('task_id', 'name', name=op.f('uq_argument_task_id_name'))
    )
    op.create_index(op.f('ix_argument_owner'), 'argument', ['owner'], unique=False)
    op.create_index(op.f('ix_argument_task_id'), 'argument', ['task_id'], unique=False)
    op.create_table('socket',
    sa.Column('processor_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('queue_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('task_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('schedule_type', sa.String(length=20), nullable=True),
    sa.Column('scheduled', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('cron', sa.String(length=100), nullable=True),
    sa.Column('interval', sa.Integer(), nullable=True),
    sa.Column('status_message', sa.Text(), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('requested_status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('description', sa.String(length=2000), nullable=True),
    sa.Column('id', sa.Uuid(as_uuid=False), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('owner', sa.String(length=63), server_default=sa.text('current_user'), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('lastupdated', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("schedule_type IS NULL OR schedule_type IN ('CRON', 'INTERVAL')", name=op.f('ck_socket_schedule_type')),
    sa.ForeignKeyConstraint(['processor_id'], ['processor.id'], name=op.f('fk_socket_processor_id_processor'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['queue_id'], ['queue.id'], name=op.f('fk_socket_queue_id_queue')),
    sa.ForeignKeyConstraint(['task_id'], ['task.id'], name=op.f('fk_socket_task_id_task')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_socket')),
    sa.UniqueConstraint('owner', 'name', name=op.f('uq_socket_owner_name'))
    )
    op.create_index(op.f('ix_socket_owner'), 'socket', ['owner'], unique=False)
    op.create_index(op.f('ix_socket_processor_id'), 'socket', ['processor_id'], unique=False)
    op.create_index(op.f('ix_socket_queue_id'), 'socket', ['queue_id'], unique=False)
    op.create_index(op.f('ix_socket_task_id'), 'socket', ['task_id'], unique=False)
    op.create_table('worker',
    sa.Column('backend', sa.String(length=1000), nullable=True),
    sa.Column('broker', sa.String(length=1000), nullable=True),
    sa.Column('concurrency', sa.Integer(), server_default='1', nullable=False),
    sa.Column('process', sa.Integer(), nullable=True),
    sa.Column('hostname', sa.String(length=255), nullable=True),
    sa.Column('workerdir', sa.String(length=1000), nullable=True),
    sa.Column('commit', sa.String(length=64), nullable=True),
    sa.Column('processor_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('agent_id', sa.Uuid(as_uuid=False), nullable=True),
    sa.Column('deployment_id', sa.Uuid(as_uuid=False), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('requested_status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('description', sa.String(length=2000), nullable=True),
    sa.Column('id', sa.Uuid(as_uuid=False), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('owner', sa.String(length=63), server_default=sa.text('current_user'), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('lastupdated', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['agent_id'], ['agent.id'], name=op.f('fk_worker_agent_id_agent'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['deployment_id'], ['deployment.id'], name=op.f('fk_worker_deployment_id_deployment'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['processor_id'], ['processor.id'], name=op.f('fk_worker_processor_id_processor'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_worker')),
    sa.UniqueConstraint('owner', 'name', name=op.f('uq_worker_owner_name'))
    )
    op.create_index(op.f('ix_worker_agent_id'), 'worker', ['agent_id'], unique=False)
    op.create_index(op.f('ix_worker_owner'), 'worker', ['owner'], unique=False)
    op.create_index(op.f('ix_worker_processor_id'), 'worker', ['processor_id'], unique=False)
    op.create_table('call',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('state', sa.String(length=20), server_default='queued', nullable=False),
    sa.Column('socket_id', sa.Uuid(as_uuid=False), nullable=True),
    sa.Column('processor', sa.String(length=255), nullable=True),
    sa.Column('parent', sa.Uuid(as_uuid=False), nullable=True),
    sa.Column('tracking', sa.Uuid(as_uuid=False), nullable=True),
    sa.Column('argument', sa.String(length=255), nullable=True),
    sa.Column('worker', sa.String(length=255), nullable=True),
    sa.Column('host', sa.String(length=255), nullable=True),
    sa.Column('deliveries', sa.Integer(), server_default='0', nullable=False),
    sa.Column('received', sa.DateTime(timezone=True), nullable=True),
    sa.Column('started', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished', sa.DateTime(timezone=True), nullable=True),
    sa.Column('duration', sa.Float(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('result', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('id', sa.Uuid(as_uuid=False), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('owner', sa.String(length=63), server_default=sa.text('current_user'), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('lastupdated', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['socket_id'], ['socket.id'], name=op.f('fk_call_socket_id_socket'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_call'))
    )
    op.create_index('ix_call_created', 'call', ['created'], unique=False)
    op.create_index(op.f('ix_call_owner'), 'call', ['owner'], unique=False)
    op.create_index('ix_call_parent', 'call', ['parent'], unique=False)
    op.create_index('ix_call_socket_id_created', 'call', ['socket_id', 'created'], unique=False)
    op.create_index('ix_call_state', 'call', ['state'], unique=False)
    op.create_index('ix_call_tracking', 'call', ['tracking'], unique=False)
    op.create_table('plug',
    sa.Column('type', sa.String(length=10), server_default='RESULT', nullable=False),
    sa.Column('source_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('target_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('queue_id', sa.Uuid(as_uuid=False), nullable=True),
    sa.Column('argument', sa.String(length=255), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('requested_status', sa.String(length=20), server_default='ready', nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('description', sa.String(length=2000), nullable=True),
    sa.Column('id', sa.Uuid(as_uuid=False), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('owner', sa.String(length=63), server_default=sa.text('current_user'), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('lastupdated', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("type IN ('RESULT', 'ERROR')", name=op.f('ck_plug_type')),
    sa.CheckConstraint('source_id <> target_id', name=op.f('ck_plug_no_self_loop')),
    sa.ForeignKeyConstraint(['queue_id'], ['queue.id'], name=op.f('fk_plug_queue_id_queue'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['source_id'], ['socket.id'], name=op.f('fk_plug_source_id_socket'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['target_id'], ['socket.id'], name=op.f('fk_plug_target_id_socket'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_plug')),
    sa.UniqueConstraint('owner', 'name', name=op.f('uq_plug_owner_name'))
    )
    op.create_index(op.f('ix_plug_owner'), 'plug', ['owner'], unique=False)
    op.create_index(op.f('ix_plug_source_id'), 'plug', ['source_id'], unique=False)
    op.create_index(op.f('ix_plug_target_id'), 'plug', ['target_id'], unique=False)
    op.create_table('event',
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('call_id', sa.Uuid(as_uuid=False), nullable=False),
    sa.Column('id', sa.Uuid(as_uuid=False), server_default=sa.text('gen_random_uuid()'), nullable=False),
    sa.Column('owner', sa.String(length=63), server_default=sa.text('current_user'), nullable=False),
    sa.Column('created', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('lastupdated', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['call_id'], ['call.id'], name=op.f('fk_event_call_id_call'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event'))
    )
    op.create_index(op.f('ix_event_call_id'), 'event', ['call_id'], unique=False)
    op.create_index(op.f('ix_event_owner'), 'event', ['owner'], unique=False)
    _secure()


OWNED = (
    "scheduler", "node", "agent", "flow", "processor", "deployment", "worker", "queue", "task",
    "argument", "socket", "plug", "call", "event", "log", "settings", "file", "versions",
)
SECURITY = ("users", "role", "privilege", "user_privileges", "user_roles", "role_privileges")
GROUP_ROLES = ("elasticcode_user", "elasticcode_service")
# The service check is a scalar subquery so PostgreSQL evaluates it once per statement, not per row.
RULE = "owner = current_user OR (SELECT pg_has_role(current_user, 'elasticcode_service', 'MEMBER'))"


def _secure() -> None:
    for role in GROUP_ROLES:
        # Roles are cluster-wide: another database (or a concurrent test run) may have made them.
        op.execute(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN "
            f"CREATE ROLE {role} NOLOGIN; END IF; "
            f"EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        )
    op.execute("GRANT USAGE ON SCHEMA public TO elasticcode_user, elasticcode_service")
    for table in OWNED:
        op.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON "{table}" TO elasticcode_user, elasticcode_service')
        op.execute(f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY')
        op.execute(f'ALTER TABLE "{table}" FORCE ROW LEVEL SECURITY')
        op.execute(f'CREATE POLICY owner_rows ON "{table}" USING ({RULE}) WITH CHECK ({RULE})')
    for table in SECURITY:
        op.execute(f'GRANT SELECT ON "{table}" TO elasticcode_user, elasticcode_service')


def downgrade() -> None:
    op.drop_index(op.f('ix_event_owner'), table_name='event')
    op.drop_index(op.f('ix_event_call_id'), table_name='event')
    op.drop_table('event')
    op.drop_index(op.f('ix_plug_target_id'), table_name='plug')
    op.drop_index(op.f('ix_plug_source_id'), table_name='plug')
    op.drop_index(op.f('ix_plug_owner'), table_name='plug')
    op.drop_table('plug')
    op.drop_index('ix_call_tracking', table_name='call')
    op.drop_index('ix_call_state', table_name='call')
    op.drop_index('ix_call_socket_id_created', table_name='call')
    op.drop_index('ix_call_parent', table_name='call')
    op.drop_index(op.f('ix_call_owner'), table_name='call')
    op.drop_index('ix_call_created', table_name='call')
    op.drop_table('call')
    op.drop_index(op.f('ix_worker_processor_id'), table_name='worker')
    op.drop_index(op.f('ix_worker_owner'), table_name='worker')
    op.drop_index(op.f('ix_worker_agent_id'), table_name='worker')
    op.drop_table('worker')
    op.drop_index(op.f('ix_socket_task_id'), table_name='socket')
    op.drop_index(op.f('ix_socket_queue_id'), table_name='socket')
    op.drop_index(op.f('ix_socket_processor_id'), table_name='socket')
    op.drop_index(op.f('ix_socket_owner'), table_name='socket')
    op.drop_table('socket')
    op.drop_index(op.f('ix_argument_task_id'), table_name='argument')
    op.drop_index(op.f('ix_argument_owner'), table_name='argument')
    op.drop_table('argument')
    op.drop_index(op.f('ix_task_processor_id'), table_name='task')
    op.drop_index(op.f('ix_task_owner'), table_name='task')
    op.drop_table('task')
    op.drop_index(op.f('ix_deployment_processor_id'), table_name='deployment')
    op.drop_index(op.f('ix_deployment_owner'), table_name='deployment')
    op.drop_table('deployment')
    op.drop_index(op.f('ix_processor_owner'), table_name='processor')
    op.drop_table('processor')
    op.drop_index(op.f('ix_agent_owner'), table_name='agent')
    op.drop_table('agent')
    op.drop_index(op.f('ix_versions_owner'), table_name='versions')
    op.drop_index(op.f('ix_versions_file_id'), table_name='versions')
    op.drop_table('versions')
    op.drop_table('user_roles')
    op.drop_table('user_privileges')
    op.drop_table('role_privileges')
    op.drop_index(op.f('ix_node_owner'), table_name='node')
    op.drop_index(op.f('ix_node_hostname'), table_name='node')
    op.drop_table('node')
    op.drop_index(op.f('ix_flow_owner'), table_name='flow')
    op.drop_table('flow')
    op.drop_index(op.f('ix_users_owner'), table_name='users')
    op.drop_table('users')
    op.drop_index(op.f('ix_settings_owner'), table_name='settings')
    op.drop_table('settings')
    op.drop_index(op.f('ix_scheduler_owner'), table_name='scheduler')
    op.drop_table('scheduler')
    op.drop_index(op.f('ix_role_owner'), table_name='role')
    op.drop_table('role')
    op.drop_index(op.f('ix_queue_owner'), table_name='queue')
    op.drop_table('queue')
    op.drop_index(op.f('ix_privilege_owner'), table_name='privilege')
    op.drop_table('privilege')
    op.drop_index(op.f('ix_log_owner'), table_name='log')
    op.drop_index(op.f('ix_log_oid'), table_name='log')
    op.drop_table('log')
    op.drop_index(op.f('ix_file_owner'), table_name='file')
    op.drop_table('file')
