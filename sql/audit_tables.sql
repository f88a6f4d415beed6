-- The audit trail (SPEC §6) and the event outbox (SPEC §10).
--
-- audit.entries is append-only and owned by loopctl_audit, a role no API role can become.
-- Triggers write it in the same transaction as the change. The per-tenant hash chain is
-- kept in audit.chain, also append-only: a sealer links committed entries in order after
-- commit (audit.seal), so writers never wait on a per-tenant lock. See functions/audit.sql.
set role loopctl_audit;

create table audit.entries (
  id              bigint generated always as identity primary key,
  tenant_id       uuid not null,
  occurred_at     timestamptz not null default clock_timestamp(),
  txid            xid8 not null default pg_current_xact_id(),
  actor_key_id    uuid,
  actor_agent_id  uuid,
  actor_role      text,
  actor_lineage   uuid[],
  action          text not null,          -- 'insert' | 'update' | 'delete' | domain action
  entity_type     text not null,          -- table name: 'story', 'epic', ...
  entity_id       uuid,
  project_id      uuid,
  old_state       jsonb,
  new_state       jsonb,
  request_id      text
);
create index entries_by_tenant on audit.entries (tenant_id, id);
create index entries_by_entity on audit.entries (tenant_id, entity_type, entity_id, id);
-- Story history: rows that belong to a story (reviews, artifacts, verification results, ...)
-- carry its id in their state.
create index entries_by_story on audit.entries
  (tenant_id, ((coalesce(new_state, old_state) ->> 'story_id')), id)
  where coalesce(new_state, old_state) ? 'story_id';

-- Entries not yet linked into their tenant's chain: a queue (rows leave when sealed).
create table audit.pending (
  tenant_id  uuid not null,
  entry_id   bigint not null references audit.entries (id),
  primary key (tenant_id, entry_id)
);

-- The chain: seq is gapless per tenant, assigned by the sealer in commit-visibility order,
-- so it is also the change feed's cursor (a reader never skips a later-sealed entry).
create table audit.chain (
  tenant_id   uuid not null,
  seq         bigint not null check (seq >= 1),
  entry_id    bigint not null unique references audit.entries (id),
  prev_hash   bytea not null,
  entry_hash  bytea not null,
  sealed_at   timestamptz not null default clock_timestamp(),
  primary key (tenant_id, seq)
);

-- The newest link of each tenant's chain (updated only by the sealer, under its lock).
create table audit.chain_head (
  tenant_id  uuid primary key,
  seq        bigint not null,
  hash       bytea not null
);

reset role;

set role loopctl_owner;
-- Outbox: events written in the same transaction as the change that causes them; the
-- webhook worker turns them into deliveries. Rolled-back changes emit nothing.
create table app.events (
  tenant_id   uuid not null references app.tenants (id) on delete cascade,
  id          bigint generated always as identity,
  event_type  text not null,
  project_id  uuid,
  entity_type text,
  entity_id   uuid,
  payload     jsonb not null,
  created_at  timestamptz not null default now(),
  primary key (tenant_id, id)
);
create index events_by_id on app.events (id);
reset role;
