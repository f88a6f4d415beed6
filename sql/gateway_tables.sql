-- gateway_tables: state the HTTP gateway shares between all of its processes.
set role loopctl_owner;

-- One row per API key: a fixed one-minute window that opens at the key's first request in
-- it (not at a clock-aligned minute, so "N requests within a minute" is exact), and the
-- number of requests counted in it. Unlogged: a lost window after a crash only resets the
-- counters, and the write-ahead log stays free of per-request writes.
create unlogged table app.rate_limits (
  tenant_id     uuid not null references app.tenants (id) on delete cascade,
  key_id        uuid not null,
  window_start  timestamptz not null,
  hits          integer not null check (hits >= 0),
  primary key (tenant_id, key_id),
  foreign key (tenant_id, key_id) references app.api_keys (tenant_id, id) on delete cascade
);
comment on table app.rate_limits is
  '[no-audit] per-key request counters of the HTTP gateway (one-minute windows)';

reset role;
