"""The facade schema as Sojourn made it before migrations (December 2026).

A database made by an earlier Sojourn (``create_all`` at start, plus ``ADD COLUMN`` for what was added since) is
brought to this point, not recreated: tables that are missing are created, columns that are missing are added
(nullable, with the model's default as the column's default, as Sojourn did), and what is there is kept.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BASELINE = sa.MetaData()

sa.Table(
    'api_keys', BASELINE,
    sa.Column('id', sa.String(), nullable=False, primary_key=True),
    sa.Column('principal', sa.String(), nullable=False),
    sa.Column('name', sa.String(), nullable=False, default=''),
    sa.Column('key_hash', sa.String(), nullable=False),
    sa.Column('scopes', sa.String(), nullable=False, default='jobs:read,jobs:write'),
    sa.Column('url_allow', sa.String(), nullable=True),
    sa.Column('rate_limit', sa.String(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Index('ix_api_keys_key_hash', 'key_hash', unique=True),
    sa.Index('ix_api_keys_principal', 'principal', unique=False),
)
sa.Table(
    'batches', BASELINE,
    sa.Column('id', sa.String(), nullable=False, primary_key=True),
    sa.Column('owner', sa.String(), nullable=False),
    sa.Column('max_concurrent', sa.Integer(), nullable=False),
    sa.Column('job_ids', sa.String(), nullable=False),
    sa.Column('settled', sa.Boolean(), nullable=False, default=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Index('ix_batches_owner', 'owner', unique=False),
    sa.Index('ix_batches_settled', 'settled', unique=False),
)
sa.Table(
    'fastlane_executions', BASELINE,
    sa.Column('id', sa.String(), nullable=False, primary_key=True),
    sa.Column('job_id', sa.String(), nullable=False),
    sa.Column('owner', sa.String(), nullable=False),
    sa.Column('task_id', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('image', sa.String(), nullable=False),
    sa.Column('command', sa.String(), nullable=False),
    sa.Column('request_ip', sa.String(), nullable=True),
    sa.Column('status', sa.String(), nullable=False, default='enqueued'),
    sa.Column('final', sa.Boolean(), nullable=False, default=False),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('log', sa.String(), nullable=True),
    sa.Column('error', sa.String(), nullable=True),
    sa.Column('metadata_json', sa.String(), nullable=False, default='{}'),
    sa.Column('ledger_job_id', sa.String(), nullable=True),
    sa.Column('attempt', sa.Integer(), nullable=False, default=0),
    sa.Column('stop_requested', sa.Boolean(), nullable=False, default=False),
    sa.Column('run_at', sa.DateTime(timezone=True), nullable=True),
    sa.Index('ix_fastlane_executions_final', 'final', unique=False),
    sa.Index('ix_fastlane_executions_job_id', 'job_id', unique=False),
    sa.Index('ix_fastlane_executions_ledger_job_id', 'ledger_job_id', unique=False),
    sa.Index('ix_fastlane_executions_owner', 'owner', unique=False),
)
sa.Table(
    'fastlane_hook_deliveries', BASELINE,
    sa.Column('id', sa.String(), nullable=False, primary_key=True),
    sa.Column('owner', sa.String(), nullable=False),
    sa.Column('execution_id', sa.String(), nullable=False),
    sa.Column('job_id', sa.String(), nullable=False),
    sa.Column('event', sa.String(), nullable=False),
    sa.Column('url', sa.String(), nullable=False),
    sa.Column('headers', sa.String(), nullable=False, default='{}'),
    sa.Column('retries', sa.Integer(), nullable=False, default=0),
    sa.Column('payload', sa.String(), nullable=False),
    sa.Column('status', sa.String(), nullable=False, default='pending'),
    sa.Column('attempts', sa.Integer(), nullable=False, default=0),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_status_code', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.String(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Index('ix_fastlane_hook_deliveries_execution_id', 'execution_id', unique=False),
    sa.Index('ix_fastlane_hook_deliveries_next_attempt_at', 'next_attempt_at', unique=False),
    sa.Index('ix_fastlane_hook_deliveries_owner', 'owner', unique=False),
    sa.Index('ix_fastlane_hook_deliveries_status', 'status', unique=False),
)
sa.Table(
    'fastlane_jobs', BASELINE,
    sa.Column('id', sa.String(), nullable=False, primary_key=True),
    sa.Column('owner', sa.String(), nullable=False),
    sa.Column('task_id', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_modified_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('image', sa.String(), nullable=False),
    sa.Column('command', sa.String(), nullable=False),
    sa.Column('request_ip', sa.String(), nullable=True),
    sa.Column('payload', sa.String(), nullable=False, default='{}'),
    sa.Column('retry_count', sa.Integer(), nullable=False, default=0),
    sa.Column('scheduled', sa.Boolean(), nullable=False, default=False),
    sa.Column('cron', sa.String(), nullable=True),
    sa.Column('next_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('stopped', sa.Boolean(), nullable=False, default=False),
    sa.Column('deployment_id', sa.String(), nullable=True),
    sa.Column('url_allow', sa.String(), nullable=False, default='[]'),
    sa.Index('ix_fastlane_jobs_next_run_at', 'next_run_at', unique=False),
    sa.Index('ix_fastlane_jobs_owner', 'owner', unique=False),
    sa.Index('ix_fastlane_jobs_task_id', 'task_id', unique=False),
)
sa.Table(
    'fastlane_tasks', BASELINE,
    sa.Column('id', sa.Integer(), nullable=False, primary_key=True),
    sa.Column('owner', sa.String(), nullable=False),
    sa.Column('task_id', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_modified_at', sa.DateTime(timezone=True), nullable=False),
    sa.Index('ix_fastlane_tasks_owner', 'owner', unique=False),
    sa.Index('ix_fastlane_tasks_task_id', 'task_id', unique=False),
)
sa.Table(
    'jobs', BASELINE,
    sa.Column('seq', sa.Integer(), nullable=False, primary_key=True),
    sa.Column('id', sa.String(64), nullable=False),
    sa.Column('owner', sa.String(), nullable=False),
    sa.Column('dialect', sa.String(), nullable=False),
    sa.Column('external_id', sa.String(), nullable=True),
    sa.Column('group_id', sa.String(), nullable=True),
    sa.Column('kind', sa.String(), nullable=False, default='browse'),
    sa.Column('spec', sa.String(), nullable=False),
    sa.Column('priority', sa.String(), nullable=False, default='normal'),
    sa.Column('run_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('labels', sa.String(), nullable=False, default='{}'),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('held', sa.Boolean(), nullable=False, default=False),
    sa.Column('cancel_requested_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('flow_run_id', sa.String(), nullable=True),
    sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('claimed_by', sa.String(), nullable=True),
    sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False, default=0),
    sa.Column('last_error', sa.String(), nullable=True),
    sa.Column('rejected', sa.Boolean(), nullable=False, default=False),
    sa.UniqueConstraint('dialect', 'external_id', name='uq_jobs_dialect_external_id'),
    sa.Index('ix_jobs_created_at', 'created_at', unique=False),
    sa.Index('ix_jobs_group_id', 'group_id', unique=False),
    sa.Index('ix_jobs_id', 'id', unique=True),
    sa.Index('ix_jobs_owner', 'owner', unique=False),
    sa.Index('ix_jobs_undispatched', 'flow_run_id', 'seq', unique=False),
)
sa.Table(
    'scrape_jobs', BASELINE,
    sa.Column('id', sa.String(40), nullable=False, primary_key=True),
    sa.Column('job_id', sa.String(), nullable=False),
    sa.Column('project_id', sa.String(), nullable=False),
    sa.Column('owner', sa.String(), nullable=False),
    sa.Column('source', sa.String(), nullable=False, default='manual'),
    sa.Column('schedule_id', sa.String(), nullable=True),
    sa.Column('retry_of', sa.String(), nullable=True),
    sa.Column('config', sa.String(), nullable=False, default='{}'),
    sa.Column('status', sa.String(), nullable=False, default='pending'),
    sa.Column('final', sa.String(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ingested_at', sa.DateTime(timezone=True), nullable=True),
    sa.Index('ix_scrape_jobs_created_at', 'created_at', unique=False),
    sa.Index('ix_scrape_jobs_job_id', 'job_id', unique=False),
    sa.Index('ix_scrape_jobs_owner', 'owner', unique=False),
    sa.Index('ix_scrape_jobs_project_created', 'project_id', 'created_at', unique=False),
    sa.Index('ix_scrape_jobs_project_id', 'project_id', unique=False),
    sa.Index('ix_scrape_jobs_status', 'status', unique=False),
)
sa.Table(
    'scrape_projects', BASELINE,
    sa.Column('id', sa.String(40), nullable=False, primary_key=True),
    sa.Column('owner', sa.String(), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('description', sa.String(), nullable=True),
    sa.Column('config', sa.String(), nullable=False, default='{}'),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('running_job', sa.String(40), nullable=True),
    sa.Column('running_claimed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Index('ix_scrape_projects_created_at', 'created_at', unique=False),
    sa.Index('ix_scrape_projects_owner', 'owner', unique=False),
)
sa.Table(
    'scrape_results', BASELINE,
    sa.Column('seq', sa.Integer(), nullable=False, primary_key=True),
    sa.Column('id', sa.String(40), nullable=False),
    sa.Column('owner', sa.String(), nullable=False),
    sa.Column('project_id', sa.String(), nullable=False),
    sa.Column('target_id', sa.String(), nullable=False),
    sa.Column('job_id', sa.String(), nullable=False),
    sa.Column('source_url', sa.String(), nullable=False),
    sa.Column('page', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('data', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint('id'),
    sa.Index('ix_scrape_results_job', 'job_id', 'target_id', 'seq', unique=False),
    sa.Index('ix_scrape_results_owner', 'owner', unique=False),
    sa.Index('ix_scrape_results_project', 'project_id', 'seq', unique=False),
    sa.Index('ix_scrape_results_target', 'target_id', 'seq', unique=False),
)
sa.Table(
    'scrape_schedules', BASELINE,
    sa.Column('id', sa.String(40), nullable=False, primary_key=True),
    sa.Column('project_id', sa.String(), nullable=False),
    sa.Column('owner', sa.String(), nullable=False),
    sa.Column('frequency', sa.String(), nullable=True),
    sa.Column('time', sa.String(), nullable=True),
    sa.Column('timezone', sa.String(), nullable=False, default='UTC'),
    sa.Column('day_of_week', sa.Integer(), nullable=True),
    sa.Column('day_of_month', sa.Integer(), nullable=True),
    sa.Column('cron', sa.String(), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False, default=True),
    sa.Column('next_run', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_run', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_status', sa.String(), nullable=True),
    sa.Column('history', sa.String(), nullable=False, default='[]'),
    sa.Column('deployment_id', sa.String(), nullable=True),
    sa.Column('url_allow', sa.String(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint('project_id'),
    sa.Index('ix_scrape_schedules_owner', 'owner', unique=False),
)
sa.Table(
    'scrape_targets', BASELINE,
    sa.Column('id', sa.String(40), nullable=False, primary_key=True),
    sa.Column('project_id', sa.String(), nullable=False),
    sa.Column('owner', sa.String(), nullable=False),
    sa.Column('url', sa.String(), nullable=False),
    sa.Column('name', sa.String(), nullable=True),
    sa.Column('platform', sa.String(), nullable=False, default='generic'),
    sa.Column('status', sa.String(), nullable=False, default='active'),
    sa.Column('extract', sa.String(), nullable=False, default='{}'),
    sa.Column('last_scraped', sa.DateTime(timezone=True), nullable=True),
    sa.Column('results_count', sa.Integer(), nullable=False, default=0),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint('project_id', 'url', name='uq_scrape_targets_project_url'),
    sa.Index('ix_scrape_targets_created_at', 'created_at', unique=False),
    sa.Index('ix_scrape_targets_owner', 'owner', unique=False),
    sa.Index('ix_scrape_targets_project_id', 'project_id', unique=False),
)
sa.Table(
    'service_leases', BASELINE,
    sa.Column('name', sa.String(100), nullable=False, primary_key=True),
    sa.Column('holder', sa.String(200), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('acquired_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.String(500), nullable=True),
    sa.Column('runs', sa.Integer(), nullable=False, default=0),
    sa.Column('errors', sa.Integer(), nullable=False, default=0),
)
sa.Table(
    'taskengine_callbacks', BASELINE,
    sa.Column('id', sa.String(), nullable=False, primary_key=True),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('url', sa.String(), nullable=False),
    sa.Column('payload', sa.String(), nullable=False),
    sa.Column('status', sa.String(), nullable=False, default='pending'),
    sa.Column('attempts', sa.Integer(), nullable=False, default=0),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_error', sa.String(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ordinal', sa.Integer(), nullable=True),
    sa.Index('ix_taskengine_callbacks_next_attempt_at', 'next_attempt_at', unique=False),
    sa.Index('ix_taskengine_callbacks_seq', 'seq', unique=False),
    sa.Index('ix_taskengine_callbacks_status', 'status', unique=False),
)
sa.Table(
    'taskengine_jobs', BASELINE,
    sa.Column('seq', sa.Integer(), nullable=False, primary_key=True),
    sa.Column('job_id', sa.String(64), nullable=False),
    sa.Column('client', sa.String(), nullable=False),
    sa.Column('workflow', sa.String(), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False, default=5),
    sa.Column('parameters', sa.String(), nullable=False, default='{}'),
    sa.Column('content_id', sa.String(), nullable=True),
    sa.Column('run_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('semaphore_url', sa.String(), nullable=True),
    sa.Column('queue_state', sa.String(), nullable=True),
    sa.Column('released', sa.Boolean(), nullable=False, default=False),
    sa.Column('rerun_of', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_noticed', sa.Boolean(), nullable=False, default=False),
    sa.Index('ix_taskengine_jobs_client', 'client', unique=False),
    sa.Index('ix_taskengine_jobs_content_id', 'content_id', unique=False),
    sa.Index('ix_taskengine_jobs_created_at', 'created_at', unique=False),
    sa.Index('ix_taskengine_jobs_job_id', 'job_id', unique=True),
)
sa.Table(
    'taskengine_schedules', BASELINE,
    sa.Column('name', sa.String(200), nullable=False, primary_key=True),
    sa.Column('active', sa.Boolean(), nullable=False, default=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
)
sa.Table(
    'taskengine_settings', BASELINE,
    sa.Column('name', sa.String(200), nullable=False, primary_key=True),
    sa.Column('value', sa.String(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
)
sa.Table(
    'taskengine_tasks', BASELINE,
    sa.Column('task_run_id', sa.String(64), nullable=False, primary_key=True),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(), nullable=False, default=''),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint('seq', 'number', name='uq_taskengine_tasks_seq_number'),
    sa.Index('ix_taskengine_tasks_seq', 'seq', unique=False),
)
sa.Table(
    'templates', BASELINE,
    sa.Column('id', sa.String(), nullable=False, primary_key=True),
    sa.Column('owner', sa.String(), nullable=False),
    sa.Column('name', sa.String(), nullable=False),
    sa.Column('description', sa.String(), nullable=False, default=''),
    sa.Column('type', sa.String(), nullable=False),
    sa.Column('default_input', sa.String(), nullable=False),
    sa.Column('variables', sa.String(), nullable=False, default='[]'),
    sa.Column('priority', sa.String(), nullable=False, default='normal'),
    sa.Column('options', sa.String(), nullable=False, default='{}'),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Index('ix_templates_owner', 'owner', unique=False),
)
sa.Table(
    'watermarks', BASELINE,
    sa.Column('name', sa.String(), nullable=False, primary_key=True),
    sa.Column('value', sa.DateTime(timezone=True), nullable=False),
)
sa.Table(
    'webhook_deliveries', BASELINE,
    sa.Column('id', sa.String(), nullable=False, primary_key=True),
    sa.Column('webhook_id', sa.String(), nullable=False),
    sa.Column('owner', sa.String(), nullable=False),
    sa.Column('event', sa.String(), nullable=False),
    sa.Column('job_id', sa.String(), nullable=False),
    sa.Column('payload', sa.String(), nullable=False),
    sa.Column('status', sa.String(), nullable=False, default='pending'),
    sa.Column('attempts', sa.Integer(), nullable=False, default=0),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_status_code', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.String(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Index('ix_webhook_deliveries_job_id', 'job_id', unique=False),
    sa.Index('ix_webhook_deliveries_next_attempt_at', 'next_attempt_at', unique=False),
    sa.Index('ix_webhook_deliveries_owner', 'owner', unique=False),
    sa.Index('ix_webhook_deliveries_status', 'status', unique=False),
    sa.Index('ix_webhook_deliveries_webhook_id', 'webhook_id', unique=False),
)
sa.Table(
    'webhooks', BASELINE,
    sa.Column('id', sa.String(), nullable=False, primary_key=True),
    sa.Column('owner', sa.String(), nullable=False),
    sa.Column('url', sa.String(), nullable=False),
    sa.Column('events', sa.String(), nullable=False),
    sa.Column('secret_encrypted', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Index('ix_webhooks_owner', 'owner', unique=False),
)


def upgrade() -> None:
    bind = op.get_bind()
    BASELINE.create_all(bind)  # only what is missing
    inspector = sa.inspect(bind)
    for table in BASELINE.sorted_tables:
        have = {c["name"]: c for c in inspector.get_columns(table.name)}
        tighten = []
        for column in table.columns:
            default = column.default.arg if column.default is not None else None
            if column.name not in have:
                op.add_column(table.name, sa.Column(column.name, column.type, nullable=True, server_default=_literal(default)))
            elif column.nullable or not have[column.name]["nullable"]:
                continue
            if not column.nullable and default is not None:  # as a fresh database has it: NOT NULL, no server default
                op.execute(table.update().where(table.c[column.name].is_(None)).values({column.name: default}))
                tighten.append(column)
        if tighten:
            with op.batch_alter_table(table.name) as batch:  # SQLite: the table is copied with the new definition
                for column in tighten:
                    batch.alter_column(column.name, existing_type=column.type, nullable=False, server_default=None)


def _literal(value: object) -> sa.TextClause | str | None:
    if isinstance(value, bool):
        return sa.text("true" if value else "false")
    if isinstance(value, int):
        return sa.text(str(value))
    return value if isinstance(value, str) else None


def downgrade() -> None:
    BASELINE.drop_all(op.get_bind())
