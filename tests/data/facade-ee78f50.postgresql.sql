-- The facade schema as Sojourn's main made it at ee78f50 (before migrations: create_all at start), for the upgrade test.

CREATE TABLE api_keys (
	id VARCHAR NOT NULL, 
	principal VARCHAR NOT NULL, 
	name VARCHAR NOT NULL, 
	key_hash VARCHAR NOT NULL, 
	scopes VARCHAR NOT NULL, 
	url_allow VARCHAR, 
	rate_limit VARCHAR, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	revoked_at TIMESTAMP WITH TIME ZONE, 
	PRIMARY KEY (id)
);

CREATE UNIQUE INDEX ix_api_keys_key_hash ON api_keys (key_hash);

CREATE INDEX ix_api_keys_principal ON api_keys (principal);

CREATE TABLE batches (
	id VARCHAR NOT NULL, 
	owner VARCHAR NOT NULL, 
	max_concurrent INTEGER NOT NULL, 
	job_ids VARCHAR NOT NULL, 
	settled BOOLEAN NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_batches_owner ON batches (owner);

CREATE INDEX ix_batches_settled ON batches (settled);

CREATE TABLE fastlane_executions (
	id VARCHAR NOT NULL, 
	job_id VARCHAR NOT NULL, 
	owner VARCHAR NOT NULL, 
	task_id VARCHAR NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	started_at TIMESTAMP WITH TIME ZONE, 
	finished_at TIMESTAMP WITH TIME ZONE, 
	image VARCHAR NOT NULL, 
	command VARCHAR NOT NULL, 
	request_ip VARCHAR, 
	status VARCHAR NOT NULL, 
	final BOOLEAN NOT NULL, 
	exit_code INTEGER, 
	log VARCHAR, 
	error VARCHAR, 
	metadata_json VARCHAR NOT NULL, 
	ledger_job_id VARCHAR, 
	attempt INTEGER NOT NULL, 
	stop_requested BOOLEAN NOT NULL, 
	run_at TIMESTAMP WITH TIME ZONE, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_fastlane_executions_final ON fastlane_executions (final);

CREATE INDEX ix_fastlane_executions_job_id ON fastlane_executions (job_id);

CREATE INDEX ix_fastlane_executions_ledger_job_id ON fastlane_executions (ledger_job_id);

CREATE INDEX ix_fastlane_executions_owner ON fastlane_executions (owner);

CREATE TABLE fastlane_hook_deliveries (
	id VARCHAR NOT NULL, 
	owner VARCHAR NOT NULL, 
	execution_id VARCHAR NOT NULL, 
	job_id VARCHAR NOT NULL, 
	event VARCHAR NOT NULL, 
	url VARCHAR NOT NULL, 
	headers VARCHAR NOT NULL, 
	retries INTEGER NOT NULL, 
	payload VARCHAR NOT NULL, 
	status VARCHAR NOT NULL, 
	attempts INTEGER NOT NULL, 
	next_attempt_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	last_status_code INTEGER, 
	last_error VARCHAR, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_fastlane_hook_deliveries_execution_id ON fastlane_hook_deliveries (execution_id);

CREATE INDEX ix_fastlane_hook_deliveries_next_attempt_at ON fastlane_hook_deliveries (next_attempt_at);

CREATE INDEX ix_fastlane_hook_deliveries_owner ON fastlane_hook_deliveries (owner);

CREATE INDEX ix_fastlane_hook_deliveries_status ON fastlane_hook_deliveries (status);

CREATE TABLE fastlane_jobs (
	id VARCHAR NOT NULL, 
	owner VARCHAR NOT NULL, 
	task_id VARCHAR NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	last_modified_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	image VARCHAR NOT NULL, 
	command VARCHAR NOT NULL, 
	request_ip VARCHAR, 
	payload VARCHAR NOT NULL, 
	retry_count INTEGER NOT NULL, 
	scheduled BOOLEAN NOT NULL, 
	cron VARCHAR, 
	next_run_at TIMESTAMP WITH TIME ZONE, 
	stopped BOOLEAN NOT NULL, 
	deployment_id VARCHAR, 
	url_allow VARCHAR NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_fastlane_jobs_next_run_at ON fastlane_jobs (next_run_at);

CREATE INDEX ix_fastlane_jobs_owner ON fastlane_jobs (owner);

CREATE INDEX ix_fastlane_jobs_task_id ON fastlane_jobs (task_id);

CREATE TABLE fastlane_tasks (
	id SERIAL NOT NULL, 
	owner VARCHAR NOT NULL, 
	task_id VARCHAR NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	last_modified_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_fastlane_tasks_owner ON fastlane_tasks (owner);

CREATE INDEX ix_fastlane_tasks_task_id ON fastlane_tasks (task_id);

CREATE TABLE jobs (
	seq SERIAL NOT NULL, 
	id VARCHAR(64) NOT NULL, 
	owner VARCHAR NOT NULL, 
	dialect VARCHAR NOT NULL, 
	external_id VARCHAR, 
	group_id VARCHAR, 
	kind VARCHAR NOT NULL, 
	spec VARCHAR NOT NULL, 
	priority VARCHAR NOT NULL, 
	run_at TIMESTAMP WITH TIME ZONE, 
	labels VARCHAR NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	held BOOLEAN NOT NULL, 
	cancel_requested_at TIMESTAMP WITH TIME ZONE, 
	flow_run_id VARCHAR, 
	dispatched_at TIMESTAMP WITH TIME ZONE, 
	claimed_by VARCHAR, 
	claimed_until TIMESTAMP WITH TIME ZONE, 
	attempts INTEGER NOT NULL, 
	last_error VARCHAR, 
	rejected BOOLEAN NOT NULL, 
	PRIMARY KEY (seq), 
	CONSTRAINT uq_jobs_dialect_external_id UNIQUE (dialect, external_id)
);

CREATE INDEX ix_jobs_created_at ON jobs (created_at);

CREATE INDEX ix_jobs_group_id ON jobs (group_id);

CREATE UNIQUE INDEX ix_jobs_id ON jobs (id);

CREATE INDEX ix_jobs_owner ON jobs (owner);

CREATE INDEX ix_jobs_undispatched ON jobs (flow_run_id, seq);

CREATE TABLE scrape_jobs (
	id VARCHAR(40) NOT NULL, 
	job_id VARCHAR NOT NULL, 
	project_id VARCHAR NOT NULL, 
	owner VARCHAR NOT NULL, 
	source VARCHAR NOT NULL, 
	schedule_id VARCHAR, 
	retry_of VARCHAR, 
	config VARCHAR NOT NULL, 
	status VARCHAR NOT NULL, 
	final VARCHAR, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	ingested_at TIMESTAMP WITH TIME ZONE, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_scrape_jobs_created_at ON scrape_jobs (created_at);

CREATE INDEX ix_scrape_jobs_job_id ON scrape_jobs (job_id);

CREATE INDEX ix_scrape_jobs_owner ON scrape_jobs (owner);

CREATE INDEX ix_scrape_jobs_project_created ON scrape_jobs (project_id, created_at);

CREATE INDEX ix_scrape_jobs_project_id ON scrape_jobs (project_id);

CREATE INDEX ix_scrape_jobs_status ON scrape_jobs (status);

CREATE TABLE scrape_projects (
	id VARCHAR(40) NOT NULL, 
	owner VARCHAR NOT NULL, 
	name VARCHAR NOT NULL, 
	description VARCHAR, 
	config VARCHAR NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	running_job VARCHAR(40), 
	running_claimed_at TIMESTAMP WITH TIME ZONE, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_scrape_projects_created_at ON scrape_projects (created_at);

CREATE INDEX ix_scrape_projects_owner ON scrape_projects (owner);

CREATE TABLE scrape_results (
	seq SERIAL NOT NULL, 
	id VARCHAR(40) NOT NULL, 
	owner VARCHAR NOT NULL, 
	project_id VARCHAR NOT NULL, 
	target_id VARCHAR NOT NULL, 
	job_id VARCHAR NOT NULL, 
	source_url VARCHAR NOT NULL, 
	page INTEGER NOT NULL, 
	position INTEGER NOT NULL, 
	data VARCHAR NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (seq), 
	UNIQUE (id)
);

CREATE INDEX ix_scrape_results_job ON scrape_results (job_id, target_id, seq);

CREATE INDEX ix_scrape_results_owner ON scrape_results (owner);

CREATE INDEX ix_scrape_results_project ON scrape_results (project_id, seq);

CREATE INDEX ix_scrape_results_target ON scrape_results (target_id, seq);

CREATE TABLE scrape_schedules (
	id VARCHAR(40) NOT NULL, 
	project_id VARCHAR NOT NULL, 
	owner VARCHAR NOT NULL, 
	frequency VARCHAR, 
	time VARCHAR, 
	timezone VARCHAR NOT NULL, 
	day_of_week INTEGER, 
	day_of_month INTEGER, 
	cron VARCHAR, 
	enabled BOOLEAN NOT NULL, 
	next_run TIMESTAMP WITH TIME ZONE, 
	last_run TIMESTAMP WITH TIME ZONE, 
	last_status VARCHAR, 
	history VARCHAR NOT NULL, 
	deployment_id VARCHAR, 
	url_allow VARCHAR, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (project_id)
);

CREATE INDEX ix_scrape_schedules_owner ON scrape_schedules (owner);

CREATE TABLE scrape_targets (
	id VARCHAR(40) NOT NULL, 
	project_id VARCHAR NOT NULL, 
	owner VARCHAR NOT NULL, 
	url VARCHAR NOT NULL, 
	name VARCHAR, 
	platform VARCHAR NOT NULL, 
	status VARCHAR NOT NULL, 
	extract VARCHAR NOT NULL, 
	last_scraped TIMESTAMP WITH TIME ZONE, 
	results_count INTEGER NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (id), 
	CONSTRAINT uq_scrape_targets_project_url UNIQUE (project_id, url)
);

CREATE INDEX ix_scrape_targets_created_at ON scrape_targets (created_at);

CREATE INDEX ix_scrape_targets_owner ON scrape_targets (owner);

CREATE INDEX ix_scrape_targets_project_id ON scrape_targets (project_id);

CREATE TABLE service_leases (
	name VARCHAR(100) NOT NULL, 
	holder VARCHAR(200), 
	expires_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	acquired_at TIMESTAMP WITH TIME ZONE, 
	last_run_at TIMESTAMP WITH TIME ZONE, 
	last_error VARCHAR(500), 
	runs INTEGER NOT NULL, 
	errors INTEGER NOT NULL, 
	PRIMARY KEY (name)
);

CREATE TABLE taskengine_callbacks (
	id VARCHAR NOT NULL, 
	seq INTEGER NOT NULL, 
	url VARCHAR NOT NULL, 
	payload VARCHAR NOT NULL, 
	status VARCHAR NOT NULL, 
	attempts INTEGER NOT NULL, 
	next_attempt_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	last_error VARCHAR, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	ordinal INTEGER, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_taskengine_callbacks_next_attempt_at ON taskengine_callbacks (next_attempt_at);

CREATE INDEX ix_taskengine_callbacks_seq ON taskengine_callbacks (seq);

CREATE INDEX ix_taskengine_callbacks_status ON taskengine_callbacks (status);

CREATE TABLE taskengine_jobs (
	seq SERIAL NOT NULL, 
	job_id VARCHAR(64) NOT NULL, 
	client VARCHAR NOT NULL, 
	workflow VARCHAR NOT NULL, 
	priority INTEGER NOT NULL, 
	parameters VARCHAR NOT NULL, 
	content_id VARCHAR, 
	run_at TIMESTAMP WITH TIME ZONE, 
	semaphore_url VARCHAR, 
	queue_state VARCHAR, 
	released BOOLEAN NOT NULL, 
	rerun_of INTEGER, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	ended_noticed BOOLEAN NOT NULL, 
	PRIMARY KEY (seq)
);

CREATE INDEX ix_taskengine_jobs_client ON taskengine_jobs (client);

CREATE INDEX ix_taskengine_jobs_content_id ON taskengine_jobs (content_id);

CREATE INDEX ix_taskengine_jobs_created_at ON taskengine_jobs (created_at);

CREATE UNIQUE INDEX ix_taskengine_jobs_job_id ON taskengine_jobs (job_id);

CREATE TABLE taskengine_schedules (
	name VARCHAR(200) NOT NULL, 
	active BOOLEAN NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (name)
);

CREATE TABLE taskengine_settings (
	name VARCHAR(200) NOT NULL, 
	value VARCHAR NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (name)
);

CREATE TABLE taskengine_tasks (
	task_run_id VARCHAR(64) NOT NULL, 
	seq INTEGER NOT NULL, 
	number INTEGER NOT NULL, 
	name VARCHAR NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (task_run_id), 
	CONSTRAINT uq_taskengine_tasks_seq_number UNIQUE (seq, number)
);

CREATE INDEX ix_taskengine_tasks_seq ON taskengine_tasks (seq);

CREATE TABLE templates (
	id VARCHAR NOT NULL, 
	owner VARCHAR NOT NULL, 
	name VARCHAR NOT NULL, 
	description VARCHAR NOT NULL, 
	type VARCHAR NOT NULL, 
	default_input VARCHAR NOT NULL, 
	variables VARCHAR NOT NULL, 
	priority VARCHAR NOT NULL, 
	options VARCHAR NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_templates_owner ON templates (owner);

CREATE TABLE watermarks (
	name VARCHAR NOT NULL, 
	value TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (name)
);

CREATE TABLE webhook_deliveries (
	id VARCHAR NOT NULL, 
	webhook_id VARCHAR NOT NULL, 
	owner VARCHAR NOT NULL, 
	event VARCHAR NOT NULL, 
	job_id VARCHAR NOT NULL, 
	payload VARCHAR NOT NULL, 
	status VARCHAR NOT NULL, 
	attempts INTEGER NOT NULL, 
	next_attempt_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	last_status_code INTEGER, 
	last_error VARCHAR, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	delivered_at TIMESTAMP WITH TIME ZONE, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_webhook_deliveries_job_id ON webhook_deliveries (job_id);

CREATE INDEX ix_webhook_deliveries_next_attempt_at ON webhook_deliveries (next_attempt_at);

CREATE INDEX ix_webhook_deliveries_owner ON webhook_deliveries (owner);

CREATE INDEX ix_webhook_deliveries_status ON webhook_deliveries (status);

CREATE INDEX ix_webhook_deliveries_webhook_id ON webhook_deliveries (webhook_id);

CREATE TABLE webhooks (
	id VARCHAR NOT NULL, 
	owner VARCHAR NOT NULL, 
	url VARCHAR NOT NULL, 
	events VARCHAR NOT NULL, 
	secret_encrypted VARCHAR NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (id)
);

CREATE INDEX ix_webhooks_owner ON webhooks (owner);
