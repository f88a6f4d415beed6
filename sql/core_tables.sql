-- Tenancy, identity and the work model (SPEC §3–§5).
--
-- Rule: every tenant table's primary key and every foreign key lead with tenant_id, so a
-- row can never reference another tenant's row (and the schema distributes by tenant_id).
-- RLS is enabled and forced on every tenant table in policies/tenancy.sql.
set role loopctl_owner;

create table app.tenants (
  id          uuid primary key default gen_random_uuid(),
  name        text not null check (length(name) between 1 and 200),
  slug        text not null unique check (slug ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
  email       text not null check (email ~ '^[^@\s]+@[^@\s]+$' and length(email) <= 320),
  -- rate_limit_per_minute, auto_reset_on_reject, budget defaults, halt policy, ... with
  -- defaults applied by app.tenant_setting(); unknown keys are refused by the API.
  settings    jsonb not null default '{}'::jsonb check (jsonb_typeof(settings) = 'object'),
  status      text not null default 'active' check (status in ('active', 'suspended')),
  created_at  timestamptz not null default now(),
  updated_at  timestamptz not null default now()
);

create table app.agents (
  tenant_id    uuid not null references app.tenants (id) on delete cascade,
  id           uuid not null default gen_random_uuid(),
  name         text not null check (length(name) between 1 and 200),
  agent_type   text not null default 'implementer'
                 check (agent_type in ('orchestrator', 'implementer')),
  -- Dispatch lineage: root first, this agent last. Identity gates treat two agents whose
  -- lineages share a root as the same actor.
  lineage      uuid[] not null,
  parent_agent_id uuid,
  metadata     jsonb not null default '{}'::jsonb,
  created_at   timestamptz not null default now(),
  primary key (tenant_id, id),
  unique (tenant_id, name),
  foreign key (tenant_id, parent_agent_id) references app.agents (tenant_id, id),
  check (lineage[array_upper(lineage, 1)] = id)
);

create table app.api_keys (
  tenant_id    uuid not null references app.tenants (id) on delete cascade,
  id           uuid not null default gen_random_uuid(),
  name         text not null check (length(name) between 1 and 200),
  -- Only a SHA-256 hash (hex) and an 8-char display prefix are stored; the raw key
  -- ('lc_' + 40 url-safe chars) is returned once at creation.
  key_hash     text not null unique check (key_hash ~ '^[0-9a-f]{64}$'),
  key_prefix   text not null check (length(key_prefix) = 8),
  role         text not null check (role in ('user', 'orchestrator', 'agent')),
  agent_id     uuid,
  dispatch_id  uuid,
  created_by_key_id uuid,
  expires_at   timestamptz,
  revoked_at   timestamptz,
  last_used_at timestamptz,
  created_at   timestamptz not null default now(),
  primary key (tenant_id, id),
  foreign key (tenant_id, agent_id) references app.agents (tenant_id, id)
);

create table app.dispatches (
  tenant_id        uuid not null references app.tenants (id) on delete cascade,
  id               uuid not null default gen_random_uuid(),
  parent_agent_id  uuid not null,
  child_agent_id   uuid not null,
  key_id           uuid not null,
  purpose          text,
  story_id         uuid,
  expires_at       timestamptz not null,
  created_at       timestamptz not null default now(),
  primary key (tenant_id, id),
  foreign key (tenant_id, parent_agent_id) references app.agents (tenant_id, id),
  foreign key (tenant_id, child_agent_id) references app.agents (tenant_id, id),
  foreign key (tenant_id, key_id) references app.api_keys (tenant_id, id)
);

-- Per-tenant analyst login roles: they see their tenant through reporting views only,
-- whatever request settings they set themselves (app.current_tenant_id() checks this first).
create table app.analyst_roles (
  tenant_id   uuid not null references app.tenants (id) on delete cascade,
  role_name   name not null unique,
  created_at  timestamptz not null default now(),
  primary key (tenant_id, role_name)
);

create table app.projects (
  tenant_id    uuid not null references app.tenants (id) on delete cascade,
  id           uuid not null default gen_random_uuid(),
  name         text not null check (length(name) between 1 and 200),
  slug         text not null check (slug ~ '^[a-z0-9][a-z0-9._-]{0,99}$'),
  repo_url     text check (length(repo_url) <= 2000),
  description  text check (length(description) <= 20000),
  status       text not null default 'active' check (status in ('active', 'archived')),
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now(),
  primary key (tenant_id, id),
  unique (tenant_id, slug)
);

create table app.epics (
  tenant_id    uuid not null,
  id           uuid not null default gen_random_uuid(),
  project_id   uuid not null,
  number       integer not null check (number >= 0),
  title        text not null check (length(title) between 1 and 500),
  description  text check (length(description) <= 20000),
  phase        text check (length(phase) <= 200),
  position     integer not null default 0,
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now(),
  primary key (tenant_id, id),
  unique (tenant_id, project_id, number),
  unique (tenant_id, project_id, id),
  foreign key (tenant_id, project_id) references app.projects (tenant_id, id) on delete cascade
);

create table app.stories (
  tenant_id        uuid not null,
  id               uuid not null default gen_random_uuid(),
  project_id       uuid not null,
  epic_id          uuid not null,
  number           text not null check (number ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$'),
  title            text not null check (length(title) between 1 and 500),
  description      text check (length(description) <= 50000),
  estimated_hours  numeric(8, 2) check (estimated_hours >= 0),
  agent_status     text not null default 'pending' check (agent_status in
                     ('pending', 'contracted', 'assigned', 'implementing', 'reported_done')),
  verified_status  text not null default 'unverified'
                     check (verified_status in ('unverified', 'verified', 'rejected')),
  assigned_agent_id   uuid,
  -- Lineage root of the implementer, fixed at claim: the identity gates compare with it.
  implementer_root    uuid,
  contracted_by_agent_id uuid,
  reported_by_agent_id   uuid,
  verified_by_agent_id   uuid,
  backfill_reason     text,
  backfill_evidence_url text,
  contracted_at       timestamptz,
  claimed_at          timestamptz,
  started_at          timestamptz,
  reported_done_at    timestamptz,
  verified_at         timestamptz,
  rejected_at         timestamptz,
  created_at          timestamptz not null default now(),
  updated_at          timestamptz not null default now(),
  primary key (tenant_id, id),
  unique (tenant_id, project_id, number),
  foreign key (tenant_id, project_id) references app.projects (tenant_id, id) on delete cascade,
  -- The epic must belong to the same project.
  foreign key (tenant_id, project_id, epic_id)
    references app.epics (tenant_id, project_id, id) on delete cascade,
  foreign key (tenant_id, assigned_agent_id) references app.agents (tenant_id, id),
  foreign key (tenant_id, reported_by_agent_id) references app.agents (tenant_id, id),
  foreign key (tenant_id, verified_by_agent_id) references app.agents (tenant_id, id),
  foreign key (tenant_id, contracted_by_agent_id) references app.agents (tenant_id, id)
);
create index stories_by_epic on app.stories (tenant_id, epic_id);
create index stories_by_status on app.stories (tenant_id, project_id, agent_status);

create table app.acceptance_criteria (
  tenant_id    uuid not null,
  story_id     uuid not null,
  ac_id        text not null check (length(ac_id) between 1 and 64),
  position     integer not null,
  description  text not null check (length(description) between 1 and 5000),
  status       text not null default 'pending' check (status in ('pending', 'verified', 'failed')),
  updated_at   timestamptz not null default now(),
  primary key (tenant_id, story_id, ac_id),
  foreign key (tenant_id, story_id) references app.stories (tenant_id, id) on delete cascade
);

create table app.story_dependencies (
  tenant_id            uuid not null,
  story_id             uuid not null,
  depends_on_story_id  uuid not null,
  created_at           timestamptz not null default now(),
  primary key (tenant_id, story_id, depends_on_story_id),
  check (story_id <> depends_on_story_id),
  foreign key (tenant_id, story_id) references app.stories (tenant_id, id) on delete cascade,
  foreign key (tenant_id, depends_on_story_id)
    references app.stories (tenant_id, id) on delete cascade
);
create index story_dependencies_reverse on app.story_dependencies (tenant_id, depends_on_story_id);

create table app.epic_dependencies (
  tenant_id           uuid not null,
  epic_id             uuid not null,
  depends_on_epic_id  uuid not null,
  created_at          timestamptz not null default now(),
  primary key (tenant_id, epic_id, depends_on_epic_id),
  check (epic_id <> depends_on_epic_id),
  foreign key (tenant_id, epic_id) references app.epics (tenant_id, id) on delete cascade,
  foreign key (tenant_id, depends_on_epic_id) references app.epics (tenant_id, id) on delete cascade
);

create table app.artifacts (
  tenant_id      uuid not null,
  id             uuid not null default gen_random_uuid(),
  story_id       uuid not null,
  artifact_type  text not null check (length(artifact_type) between 1 and 100),
  path           text check (length(path) <= 2000),
  commit_sha     text check (commit_sha ~ '^[0-9a-fA-F]{7,64}$'),
  details        jsonb not null default '{}'::jsonb check (pg_column_size(details) <= 65536),
  reported_by_agent_id uuid,
  reported_by_key_id   uuid,
  created_at     timestamptz not null default now(),
  primary key (tenant_id, id),
  foreign key (tenant_id, story_id) references app.stories (tenant_id, id) on delete cascade,
  foreign key (tenant_id, reported_by_agent_id) references app.agents (tenant_id, id)
);

create table app.reviews (
  tenant_id         uuid not null,
  id                uuid not null default gen_random_uuid(),
  story_id          uuid not null,
  reviewer_agent_id uuid,
  reviewer_key_id   uuid not null,
  review_type       text not null check (length(review_type) between 1 and 100),
  findings_count    integer not null default 0 check (findings_count >= 0),
  fixes_count       integer not null default 0 check (fixes_count >= 0),
  disproved_count   integer not null default 0 check (disproved_count >= 0),
  summary           text check (length(summary) <= 50000),
  findings          jsonb not null default '[]'::jsonb,
  completed_at      timestamptz not null default now(),
  primary key (tenant_id, id),
  foreign key (tenant_id, story_id) references app.stories (tenant_id, id) on delete cascade,
  foreign key (tenant_id, reviewer_agent_id) references app.agents (tenant_id, id)
);
create index reviews_by_story on app.reviews (tenant_id, story_id, completed_at);

create table app.verification_results (
  tenant_id        uuid not null,
  id               uuid not null default gen_random_uuid(),
  story_id         uuid not null,
  iteration        integer not null check (iteration >= 1),
  result           text not null check (result in ('pass', 'partial', 'reject')),
  summary          text check (length(summary) <= 50000),
  review_type      text,
  findings         jsonb not null default '[]'::jsonb,
  verifier_agent_id uuid,
  verifier_key_id  uuid not null,
  created_at       timestamptz not null default now(),
  primary key (tenant_id, id),
  unique (tenant_id, story_id, iteration),
  foreign key (tenant_id, story_id) references app.stories (tenant_id, id) on delete cascade,
  foreign key (tenant_id, verifier_agent_id) references app.agents (tenant_id, id)
);

-- Attempted identity-gate violations (self report / review / verify), kept even though the
-- attempt itself is refused: written by an autonomous step so the refusal can roll back.
create table app.custody_violations (
  tenant_id    uuid not null references app.tenants (id) on delete cascade,
  id           bigint generated always as identity,
  story_id     uuid,
  action       text not null,
  code         text not null,
  key_id       uuid,
  agent_id     uuid,
  lineage_root uuid,
  created_at   timestamptz not null default now(),
  primary key (tenant_id, id)
);
create index custody_violations_recent on app.custody_violations (tenant_id, created_at);

reset role;
