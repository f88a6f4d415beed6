-- Webhooks (SPEC §10): subscriptions, their signing secrets, deliveries (one per event and
-- subscription, fanned out from the app.events outbox) and one row per HTTP attempt.
--
-- loopctl_worker owns the delivery machinery (fan-out trigger, claim, record): it works
-- across tenants, so it bypasses RLS like loopctl_auth does, and every function it owns
-- filters by tenant explicitly. No API role is a member of it. Roles are cluster-wide,
-- so creation is idempotent.
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'loopctl_worker') then
    create role loopctl_worker nologin bypassrls;
  else
    alter role loopctl_worker nologin bypassrls;
  end if;
end
$$;
grant usage, create on schema app to loopctl_worker;
alter default privileges for role loopctl_worker revoke execute on functions from public;

set role loopctl_owner;

create table app.webhooks (
  tenant_id    uuid not null references app.tenants (id) on delete cascade,
  id           uuid not null default gen_random_uuid(),
  url          text not null check (length(url) between 8 and 2048),
  -- Event names of SPEC §10, or a family wildcard such as 'article.*' (validated by
  -- app.webhook_validate_events; matching in app.webhook_event_matches).
  events       text[] not null check (cardinality(events) between 1 and 50),
  project_id   uuid,
  description  text check (length(description) <= 500),
  status       text not null default 'active' check (status in ('active', 'disabled')),
  disabled_reason text,
  -- Deliveries that ended exhausted in a row; reset by any success. Reaching the installation's
  -- threshold disables the endpoint.
  consecutive_exhaustions integer not null default 0 check (consecutive_exhaustions >= 0),
  created_by_key_id uuid,
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now(),
  primary key (tenant_id, id),
  foreign key (tenant_id, project_id) references app.projects (tenant_id, id) on delete cascade
);
comment on table app.webhooks is 'Webhook subscriptions (audited; the secret lives in app.webhook_secrets)';

-- The signing secret (Standard Webhooks 'whsec_' + base64 of 32 random bytes). Shown once at
-- creation, but stored: the worker needs it to sign (HMAC is symmetric). Kept apart from
-- app.webhooks so the audit trail, which records old/new row state, never copies it.
create table app.webhook_secrets (
  tenant_id    uuid not null,
  webhook_id   uuid not null,
  secret       text not null check (secret ~ '^whsec_[A-Za-z0-9+/]{20,}={0,2}$'),
  created_at   timestamptz not null default now(),
  primary key (tenant_id, webhook_id),
  foreign key (tenant_id, webhook_id) references app.webhooks (tenant_id, id) on delete cascade
);
comment on table app.webhook_secrets is 'Webhook signing secrets [no-audit]: never copied into the audit trail';

create table app.webhook_deliveries (
  tenant_id    uuid not null,
  id           uuid not null default gen_random_uuid(),
  webhook_id   uuid not null,
  event_id     bigint not null,
  event_type   text not null,
  -- The webhook-id header: stable per (event, subscription), so a retry or a replay of the
  -- same event carries the same id and receivers can deduplicate.
  message_id   text not null,
  kind         text not null default 'event' check (kind in ('event', 'test', 'replay')),
  replay_of    uuid,
  status       text not null default 'pending'
                 check (status in ('pending', 'delivering', 'succeeded', 'failed', 'exhausted')),
  attempts     integer not null default 0 check (attempts >= 0),
  -- When the delivery may next be claimed. While 'delivering' it equals lease_until: an
  -- expired lease (a killed worker) makes the delivery claimable again.
  next_attempt_at timestamptz not null default now(),
  lease_until  timestamptz,
  lease_token  uuid,
  leased_by    text,
  last_status_code integer,
  last_error   text,
  delivered_at timestamptz,
  created_at   timestamptz not null default now(),
  updated_at   timestamptz not null default now(),
  primary key (tenant_id, id),
  foreign key (tenant_id, webhook_id) references app.webhooks (tenant_id, id) on delete cascade,
  foreign key (tenant_id, event_id) references app.events (tenant_id, id) on delete cascade,
  foreign key (tenant_id, replay_of) references app.webhook_deliveries (tenant_id, id)
    on delete set null (replay_of),
  check ((status = 'delivering') = (lease_until is not null))
);
-- Fan-out creates exactly one original delivery per (event, subscription).
create unique index webhook_deliveries_one_per_event
  on app.webhook_deliveries (tenant_id, webhook_id, event_id) where kind = 'event';
-- The claim scans only live deliveries in due order.
create index webhook_deliveries_due on app.webhook_deliveries (next_attempt_at)
  where status in ('pending', 'delivering', 'failed');
create index webhook_deliveries_by_webhook
  on app.webhook_deliveries (tenant_id, webhook_id, created_at desc);
comment on table app.webhook_deliveries is
  'Webhook deliveries, one per event and subscription [no-audit]: high churn, logged per attempt in app.webhook_attempts';

create table app.webhook_attempts (
  tenant_id    uuid not null,
  id           bigint generated always as identity,
  delivery_id  uuid not null,
  webhook_id   uuid not null,
  attempt      integer not null check (attempt >= 1),
  started_at   timestamptz not null,
  duration_ms  integer,
  status_code  integer,
  error        text,
  response_snippet text,
  worker       text,
  -- false when the worker's lease had expired and another worker had taken the delivery
  -- over: the attempt is logged but decides nothing.
  lease_held   boolean not null default true,
  created_at   timestamptz not null default now(),
  primary key (tenant_id, id),
  -- Each attempt number is made once: two workers can never both record attempt n.
  unique (tenant_id, delivery_id, attempt),
  foreign key (tenant_id, delivery_id) references app.webhook_deliveries (tenant_id, id)
    on delete cascade
);
comment on table app.webhook_attempts is 'One row per HTTP delivery attempt [no-audit]';

reset role;
