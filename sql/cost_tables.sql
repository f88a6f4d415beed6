-- Cost intelligence (SPEC §8): token usage, budgets, anomalies, skills.
--
-- Usage reports are history: a correction is a new row pointing at the one it corrects
-- (never an edit), a delete only stamps deleted_at/deleted_by. Running totals per scope
-- (app.cost_totals) are maintained in the same transaction as each report, so budget checks
-- and events never re-sum history and concurrent reports serialise on one row per scope.
set role loopctl_owner;

create table app.skills (
  tenant_id    uuid not null references app.tenants (id) on delete cascade,
  id           uuid not null default gen_random_uuid(),
  name         text not null check (length(name) between 1 and 200),
  description  text check (length(description) <= 20000),
  created_at   timestamptz not null default now(),
  primary key (tenant_id, id),
  unique (tenant_id, name)
);

create table app.skill_versions (
  tenant_id    uuid not null,
  id           uuid not null default gen_random_uuid(),
  skill_id     uuid not null,
  version      integer not null check (version >= 1),
  prompt_text  text not null check (length(prompt_text) between 1 and 200000),
  changelog    text check (length(changelog) <= 20000),
  created_at   timestamptz not null default now(),
  primary key (tenant_id, id),
  unique (tenant_id, skill_id, version),
  unique (tenant_id, skill_id, id),
  foreign key (tenant_id, skill_id) references app.skills (tenant_id, id) on delete cascade
);

create table app.token_usage_reports (
  tenant_id        uuid not null,
  id               uuid not null default gen_random_uuid(),
  -- Insertion order (ties in created_at cannot reorder a correction chain).
  seq              bigint generated always as identity,
  story_id         uuid not null,
  -- Denormalised from the story at insert time: budgets and analytics group by them.
  project_id       uuid not null,
  epic_id          uuid not null,
  -- Whose usage it is: the reporting key's agent (a correction keeps the original's).
  agent_id         uuid not null,
  key_id           uuid not null,
  input_tokens     bigint not null check (input_tokens between 0 and 100000000),
  output_tokens    bigint not null check (output_tokens between 0 and 100000000),
  total_tokens     bigint generated always as (input_tokens + output_tokens) stored,
  model_name       text not null check (model_name ~ '^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,99}$'),
  cost_millicents  bigint not null check (cost_millicents between 0 and 100000000000),
  phase            text check (length(phase) between 1 and 100),
  session_id       text check (length(session_id) between 1 and 200),
  skill_version_id uuid,
  tool_call_count  integer check (tool_call_count between 0 and 1000000),
  tests_run_count  integer check (tests_run_count between 0 and 1000000),
  metadata         jsonb not null default '{}'::jsonb
                     check (jsonb_typeof(metadata) = 'object' and pg_column_size(metadata) <= 16384),
  -- Correction chain: corrects_id is the row this one replaces, root_id the chain's first
  -- row (itself for an original). A row may be corrected at most once: chains are linear.
  corrects_id      uuid,
  root_id          uuid not null,
  deleted_at       timestamptz,
  deleted_by_key_id uuid,
  created_at       timestamptz not null default now(),
  primary key (tenant_id, id),
  foreign key (tenant_id, project_id, epic_id)
    references app.epics (tenant_id, project_id, id) on delete cascade,
  foreign key (tenant_id, story_id) references app.stories (tenant_id, id) on delete cascade,
  foreign key (tenant_id, agent_id) references app.agents (tenant_id, id),
  foreign key (tenant_id, key_id) references app.api_keys (tenant_id, id),
  foreign key (tenant_id, skill_version_id) references app.skill_versions (tenant_id, id),
  foreign key (tenant_id, corrects_id) references app.token_usage_reports (tenant_id, id),
  foreign key (tenant_id, root_id) references app.token_usage_reports (tenant_id, id)
    deferrable initially deferred,
  check ((corrects_id is null) = (root_id = id)),
  check ((deleted_at is null) = (deleted_by_key_id is null))
);
create unique index token_usage_one_correction
  on app.token_usage_reports (tenant_id, corrects_id) where corrects_id is not null;
create index token_usage_by_story on app.token_usage_reports (tenant_id, story_id, seq);
create index token_usage_by_root on app.token_usage_reports (tenant_id, root_id, seq);
create index token_usage_by_agent on app.token_usage_reports (tenant_id, agent_id);
create index token_usage_by_skill on app.token_usage_reports (tenant_id, skill_version_id)
  where skill_version_id is not null;
create index token_usage_by_day on app.token_usage_reports (tenant_id, created_at);

-- Effective running totals per scope ('story', 'epic', 'project', 'agent'), kept by
-- app.apply_usage_delta in the reporting transaction (corrections add the difference,
-- deletes subtract). Locking this row is what makes budget events fire exactly once.
create table app.cost_totals (
  tenant_id        uuid not null references app.tenants (id) on delete cascade,
  scope_type       text not null check (scope_type in ('story', 'epic', 'project', 'agent')),
  scope_id         uuid not null,
  tokens           bigint not null default 0,
  cost_millicents  bigint not null default 0,
  reports          bigint not null default 0,
  updated_at       timestamptz not null default now(),
  primary key (tenant_id, scope_type, scope_id)
);

create table app.token_budgets (
  tenant_id        uuid not null references app.tenants (id) on delete cascade,
  id               uuid not null default gen_random_uuid(),
  scope_type       text not null check (scope_type in ('story', 'epic', 'project', 'agent')),
  scope_id         uuid not null,
  limit_millicents bigint check (limit_millicents between 1 and 100000000000000),
  limit_tokens     bigint check (limit_tokens between 1 and 1000000000000),
  -- null: the tenant setting budget_alert_threshold_pct (default 80) at evaluation time.
  alert_threshold_pct integer check (alert_threshold_pct between 1 and 100),
  mode             text not null default 'warn' check (mode in ('warn', 'block')),
  created_by_key_id uuid,
  created_at       timestamptz not null default now(),
  updated_at       timestamptz not null default now(),
  primary key (tenant_id, id),
  unique (tenant_id, scope_type, scope_id),
  check (limit_millicents is not null or limit_tokens is not null)
);

-- One row per budget and level that has fired: inserting it (on conflict do nothing) is
-- the exactly-once gate for token.budget_warning / token.budget_exceeded. budget_key is the
-- budget id, or 'default:project:<id>' for the tenant default applied to a project.
create table app.budget_alerts (
  tenant_id    uuid not null references app.tenants (id) on delete cascade,
  budget_key   text not null,
  level        text not null check (level in ('warning', 'exceeded')),
  fired_at     timestamptz not null default now(),
  pct          numeric not null,
  primary key (tenant_id, budget_key, level)
);

create table app.cost_anomalies (
  tenant_id      uuid not null,
  id             uuid not null default gen_random_uuid(),
  story_id       uuid not null,
  project_id     uuid not null,
  anomaly_type   text not null check (anomaly_type in ('high_cost', 'suspiciously_low')),
  observed_millicents bigint not null,
  baseline_median numeric not null,
  baseline_mad   numeric not null,
  robust_z       numeric,
  peer_scope     text not null check (peer_scope in ('epic', 'project')),
  peer_count     integer not null,
  detected_at    timestamptz not null default now(),
  resolved_at    timestamptz,
  resolved_by_key_id uuid,
  resolution_note text check (length(resolution_note) <= 5000),
  primary key (tenant_id, id),
  foreign key (tenant_id, story_id) references app.stories (tenant_id, id) on delete cascade
);
create unique index cost_anomalies_one_open
  on app.cost_anomalies (tenant_id, story_id, anomaly_type) where resolved_at is null;
create index cost_anomalies_recent on app.cost_anomalies (tenant_id, detected_at desc);

reset role;
