-- Audit trail (SPEC §6, issue #3): triggers on every tenant table, append-only guards, the
-- per-tenant hash chain (seal and verify), the change feed and per-story history.
--
-- Design (README "Audit chain design"): writers only append to audit.entries and the
-- audit.pending queue, in their own transaction, with no shared lock. A sealer links
-- committed entries into the tenant's chain afterwards (audit.seal), one sealer per tenant
-- at a time (a try-lock: sealers skip, never wait). Chain seq is therefore assigned in
-- commit-visibility order, gapless, and doubles as the change-feed cursor.
--
-- This file is included LAST among the function files: the loop at the end attaches the
-- audit trigger to every table of schema app that exists by then (minus '[no-audit]' ones).

set role loopctl_audit;

-- Columns never copied into the trail: secrets and their hashes by name (other areas name
-- their secret columns like this, or mark the whole table '[no-audit]'), plus the table's
-- own list (p_extra: derived columns — vector and tsvector types — and columns whose
-- comment contains '[no-audit]'), computed when the trigger is attached.
drop function if exists audit.redact(jsonb);
create or replace function audit.redact(p_row jsonb, p_extra text[] default '{}') returns jsonb
language sql immutable parallel safe as $$
  select p_row - array['key_hash', 'secret', 'secret_hash', 'token_hash', 'password_hash',
                       'client_secret', 'signing_secret'] - coalesce(p_extra, '{}')
$$;

-- Columns whose change alone is bookkeeping, not a state change (an update touching only
-- these is not audited: auth.authenticate refreshes api_keys.last_used_at once a minute).
create or replace function audit.significant(p_row jsonb) returns jsonb
language sql immutable parallel safe as $$
  select p_row - array['updated_at', 'last_used_at']
$$;

-- The entity type recorded for a table: its name made singular ('stories' -> 'story',
-- 'api_keys' -> 'api_key', 'dispatches' -> 'dispatch', 'acceptance_criteria' ->
-- 'acceptance_criterion'). Computed once when the trigger is attached (a trigger argument).
create or replace function audit.entity_type_for(p_table name) returns text
language sql immutable parallel safe as $$
  select case
    when p_table ~ 'criteria$' then regexp_replace(p_table, 'criteria$', 'criterion')
    when p_table ~ 'ies$' then regexp_replace(p_table, 'ies$', 'y')
    when p_table ~ '(ch|sh|ss|x)es$' then regexp_replace(p_table, 'es$', '')
    when p_table ~ '[^s]s$' then regexp_replace(p_table, 's$', '')
    else p_table
  end
$$;

-- The row trigger on app tables. Arguments (fixed at attach time, so no catalog lookups per
-- row): entity type, tenant column, id column ('' if none), project column ('' if none),
-- columns left out of the states (a text[] literal).
-- SECURITY DEFINER as loopctl_audit: the writer (an API function running as loopctl_owner,
-- or the signup path) needs no privilege on the audit schema at all.
create or replace function audit.record_change() returns trigger
language plpgsql volatile security definer
set search_path = pg_catalog, audit as $$
declare
  v_old       jsonb;
  v_new       jsonb;
  v_row       jsonb;
  v_tenant_id uuid;
  v_ident     app.identity;
  v_request   text;
  v_headers   text;
  v_entry_id  bigint;
begin
  if tg_op <> 'INSERT' then
    v_old := audit.redact(to_jsonb(old), tg_argv[4]::text[]);
  end if;
  if tg_op <> 'DELETE' then
    v_new := audit.redact(to_jsonb(new), tg_argv[4]::text[]);
  end if;
  if tg_op = 'UPDATE' and audit.significant(v_old) = audit.significant(v_new) then
    return null;  -- nothing changed
  end if;
  v_row := coalesce(v_new, v_old);
  v_tenant_id := (v_row ->> tg_argv[1])::uuid;
  if v_tenant_id is null then
    return null;  -- not a tenant row (installation-wide data)
  end if;

  v_ident := app.current_identity();

  -- The request id is computed once per transaction and cached in a transaction-local
  -- setting: parsing request.headers needs an exception block (a subtransaction).
  v_request := current_setting('loopctl.audit_request_id', true);
  if v_request like 'r:%' then
    v_request := nullif(substr(v_request, 3), '');
  else
    v_request := null;
    v_headers := nullif(current_setting('request.headers', true), '');
    if v_headers is not null then
      begin
        v_request := v_headers::jsonb ->> 'x-request-id';
      exception when others then
        v_request := null;  -- unparsable headers carry no request id
      end;
    end if;
    v_request := left(coalesce(nullif(v_request, ''),
                               nullif(current_setting('request.id', true), '')), 200);
    perform set_config('loopctl.audit_request_id', 'r:' || coalesce(v_request, ''), true);
  end if;

  insert into audit.entries (tenant_id, actor_key_id, actor_agent_id, actor_role, actor_lineage,
                             action, entity_type, entity_id, project_id, old_state, new_state,
                             request_id)
  values (v_tenant_id, v_ident.key_id, v_ident.agent_id, coalesce(v_ident.role, 'system'),
          v_ident.lineage,
          coalesce(nullif(current_setting('loopctl.audit_action', true), ''), lower(tg_op)),
          tg_argv[0],
          case when tg_argv[2] <> '' then (v_row ->> tg_argv[2])::uuid end,
          case when tg_argv[3] <> '' then (v_row ->> tg_argv[3])::uuid end,
          v_old, v_new, v_request)
  returning id into v_entry_id;
  insert into audit.pending (tenant_id, entry_id) values (v_tenant_id, v_entry_id);
  return null;
end
$$;

-- Append-only guard on audit.entries and audit.chain: only a superuser (repairs, tests that
-- prove tampering is detected) gets past it. Privileges are revoked too (grants_audit.sql);
-- this also stops the owner, which could otherwise grant itself UPDATE back.
create or replace function audit.refuse_change() returns trigger
language plpgsql volatile set search_path = pg_catalog, audit as $$
begin
  if current_setting('is_superuser') = 'on' then
    return case when tg_op = 'DELETE' then old else new end;
  end if;
  raise exception 'audit.% is append-only: % refused', tg_table_name, tg_op
    using errcode = 'insufficient_privilege',
          hint = 'the audit trail can only be appended to';
end
$$;

do $$
declare
  t text;
begin
  foreach t in array array['audit.entries', 'audit.chain'] loop
    execute format('drop trigger if exists append_only on %s', t);
    execute format('create trigger append_only before update or delete on %s '
                   'for each row execute function audit.refuse_change()', t);
    execute format('drop trigger if exists append_only_truncate on %s', t);
    execute format('create trigger append_only_truncate before truncate on %s '
                   'for each statement execute function audit.refuse_change()', t);
  end loop;
end
$$;

-- The canonical form of an entry as linked at position p_seq (jsonb text output is
-- deterministic: keys sorted, fixed spacing; the timestamp is rendered in UTC so the
-- session's TimeZone cannot change it).
create or replace function audit.canonical_entry(e audit.entries, p_seq bigint) returns jsonb
language sql immutable parallel safe as $$
  select jsonb_build_object(
    'seq', p_seq, 'id', e.id, 'tenant_id', e.tenant_id,
    'occurred_at', e.occurred_at at time zone 'UTC', 'txid', e.txid::text,
    'actor', jsonb_build_object('key_id', e.actor_key_id, 'agent_id', e.actor_agent_id,
                                'role', e.actor_role, 'lineage', to_jsonb(e.actor_lineage)),
    'action', e.action, 'entity_type', e.entity_type, 'entity_id', e.entity_id,
    'project_id', e.project_id, 'old_state', e.old_state, 'new_state', e.new_state,
    'request_id', e.request_id)
$$;

-- entry_hash = sha256(prev_hash || canonical entry); the first link's prev_hash is 32 zero bytes.
create or replace function audit.link_hash(p_prev bytea, e audit.entries, p_seq bigint)
returns bytea language sql stable parallel safe as $$
  select sha256(p_prev || convert_to(audit.canonical_entry(e, p_seq)::text, 'UTF8'))
$$;

create or replace function audit.genesis_hash() returns bytea
language sql immutable parallel safe as $$
  select '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
$$;

-- Advisory-lock key of a tenant's sealer (class 0x4155 'AU'; 32 bits of the tenant id: a
-- rare collision only makes one sealer skip a round, never corrupts the chain).
create or replace function audit.seal_lock_key(p_tenant_id uuid) returns integer
language sql immutable parallel safe as $$
  select hashtext(p_tenant_id::text)
$$;

-- Links the tenant's committed pending entries into its chain, in entry-id order, after the
-- current head. Returns how many were sealed; 0 when another sealer holds the tenant (it
-- will link them). Must run in READ COMMITTED (each statement sees what committed before
-- the lock was taken); under a stale snapshot the primary key refuses a duplicate seq.
create or replace function audit.seal(p_tenant_id uuid, p_max_entries integer default 10000)
returns integer
language plpgsql volatile security definer
set search_path = pg_catalog, audit as $$
declare
  v_seq     bigint;
  v_hash    bytea;
  v_n       integer := 0;
  v_ids     bigint[] := '{}';
  v_prevs   bytea[] := '{}';
  v_hashes  bytea[] := '{}';
  e         audit.entries;
begin
  if p_tenant_id is null
     or not pg_try_advisory_xact_lock(16725, audit.seal_lock_key(p_tenant_id)) then
    return 0;
  end if;
  select h.seq, h.hash into v_seq, v_hash from audit.chain_head h where h.tenant_id = p_tenant_id;
  if not found then
    v_seq := 0;
    v_hash := audit.genesis_hash();
  end if;

  -- Hash sequentially in memory, then write the links in one statement (4-5x faster than
  -- an INSERT per entry).
  for e in
    select en.* from audit.pending p join audit.entries en on en.id = p.entry_id
     where p.tenant_id = p_tenant_id
     order by p.entry_id
     limit greatest(coalesce(p_max_entries, 10000), 1)
  loop
    v_n := v_n + 1;
    v_ids[v_n] := e.id;
    v_prevs[v_n] := v_hash;
    v_hash := audit.link_hash(v_hash, e, v_seq + v_n);
    v_hashes[v_n] := v_hash;
  end loop;

  if v_n > 0 then
    insert into audit.chain (tenant_id, seq, entry_id, prev_hash, entry_hash)
    select p_tenant_id, v_seq + u.ord, u.entry_id, u.prev_hash, u.entry_hash
      from unnest(v_ids, v_prevs, v_hashes) with ordinality as u(entry_id, prev_hash, entry_hash, ord);
    delete from audit.pending p where p.tenant_id = p_tenant_id and p.entry_id = any (v_ids);
    insert into audit.chain_head (tenant_id, seq, hash) values (p_tenant_id, v_seq + v_n, v_hash)
    on conflict (tenant_id) do update set seq = excluded.seq, hash = excluded.hash;
  end if;
  return v_n;
end
$$;

-- Seals every tenant with pending entries (the worker calls it every second and when
-- woken by the event outbox's NOTIFY). {tenants, sealed, skipped}.
create or replace function audit.seal_all(p_max_entries integer default 10000) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog, audit as $$
declare
  v_tenant  uuid;
  v_n       integer;
  v_tenants integer := 0;
  v_sealed  bigint := 0;
  v_skipped integer := 0;
begin
  for v_tenant in select distinct p.tenant_id from audit.pending p loop
    v_n := audit.seal(v_tenant, p_max_entries);
    if v_n > 0 then
      v_tenants := v_tenants + 1;
      v_sealed := v_sealed + v_n;
    else
      v_skipped := v_skipped + 1;
    end if;
  end loop;
  return jsonb_build_object('tenants', v_tenants, 'sealed', v_sealed, 'skipped', v_skipped);
end
$$;

-- Walks the tenant's chain and names the first broken link:
--   {ok, checked, unsealed, head: {seq, hash}, first_broken: {seq, entry_id, reason} | null}
-- reasons: gap (a seq is missing: entry_id null), duplicate_seq, prev_hash_mismatch (a link
-- does not point at its predecessor), entry_missing, entry_tenant_mismatch,
-- entry_hash_mismatch (the entry or its hash was changed), head_mismatch, entry_not_chained
-- (an entry neither in the chain nor pending; seq null).
-- Holds the tenant's sealer lock (waiting for a running sealer) so every statement sees
-- the same chain.
create or replace function audit.verify_chain(p_tenant_id uuid) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog, audit as $$
declare
  v_checked  bigint;
  v_last_seq bigint;
  v_last_hash bytea;
  v_broken   jsonb;
  v_head     audit.chain_head;
  v_unsealed bigint;
  v_orphan   bigint;
begin
  perform pg_advisory_xact_lock(16725, audit.seal_lock_key(p_tenant_id));

  with links as (
    select c.seq, c.entry_id, c.prev_hash, c.entry_hash,
           lag(c.seq) over w as prev_seq,
           lag(c.entry_hash) over w as prev_link_hash,
           e.id as found_id, e.tenant_id as entry_tenant,
           case when e.id is not null then audit.link_hash(c.prev_hash, e, c.seq) end as expected
      from audit.chain c left join audit.entries e on e.id = c.entry_id
     where c.tenant_id = p_tenant_id
    window w as (order by c.seq, c.entry_id)
  ), judged as (
    select l.*, case
             when l.seq = l.prev_seq then 'duplicate_seq'
             when l.seq <> coalesce(l.prev_seq, 0) + 1 then 'gap'
             when l.prev_hash <> coalesce(l.prev_link_hash, audit.genesis_hash())
               then 'prev_hash_mismatch'
             when l.found_id is null then 'entry_missing'
             when l.entry_tenant <> p_tenant_id then 'entry_tenant_mismatch'
             when l.entry_hash <> l.expected then 'entry_hash_mismatch'
           end as reason
      from links l
  )
  select count(*),
         (array_agg(j.seq order by j.seq desc, j.entry_id desc))[1],
         (array_agg(j.entry_hash order by j.seq desc, j.entry_id desc))[1],
         (select jsonb_build_object(
                   'seq', case when b.reason = 'gap' then coalesce(b.prev_seq, 0) + 1 else b.seq end,
                   'entry_id', case when b.reason = 'gap' then null else b.entry_id end,
                   'reason', b.reason)
            from judged b where b.reason is not null
           order by b.seq, b.entry_id limit 1)
    into v_checked, v_last_seq, v_last_hash, v_broken
    from judged j;

  select * into v_head from audit.chain_head h where h.tenant_id = p_tenant_id;
  if v_broken is null
     and (v_head.seq is distinct from v_last_seq or v_head.hash is distinct from v_last_hash) then
    v_broken := jsonb_build_object('seq', coalesce(v_head.seq, v_last_seq), 'entry_id', null,
                                   'reason', 'head_mismatch');
  end if;

  select count(*) into v_unsealed from audit.pending p where p.tenant_id = p_tenant_id;
  if v_broken is null then
    select min(e.id) into v_orphan
      from audit.entries e
     where e.tenant_id = p_tenant_id
       and not exists (select 1 from audit.chain c where c.entry_id = e.id)
       and not exists (select 1 from audit.pending p
                        where p.tenant_id = e.tenant_id and p.entry_id = e.id);
    if v_orphan is not null then
      v_broken := jsonb_build_object('seq', null, 'entry_id', v_orphan,
                                     'reason', 'entry_not_chained');
    end if;
  end if;

  return jsonb_build_object(
    'ok', v_broken is null, 'checked', v_checked, 'unsealed', v_unsealed,
    'head', case when v_head.tenant_id is not null then
              jsonb_build_object('seq', v_head.seq, 'hash', encode(v_head.hash, 'hex')) end,
    'first_broken', v_broken);
end
$$;

reset role;

-- The event outbox records derived facts of audited changes: not audited itself.
comment on table app.events is
  'Event outbox (SPEC §10): written with the change that causes it. [no-audit]';

-- Attach the audit trigger to every table of schema app with a tenant column, except those
-- whose comment contains '[no-audit]'. Re-applying this file covers tables added since.
do $$
declare
  t record;
  v_tenant_col text;
  v_id_col text;
  v_project_col text;
  v_skip_cols text[];
begin
  for t in
    select c.oid, c.oid::regclass as tbl, c.relname,
           coalesce(obj_description(c.oid, 'pg_class'), '') like '%[no-audit]%' as no_audit,
           array(select a.attname::text from pg_attribute a
                  where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped) as cols
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = 'app' and c.relkind in ('r', 'p') and not c.relispartition
  loop
    execute format('drop trigger if exists audit_record_change on %s', t.tbl);
    v_tenant_col := case when t.relname = 'tenants' then 'id'
                         when 'tenant_id' = any (t.cols) then 'tenant_id' end;
    continue when t.no_audit or v_tenant_col is null;
    v_id_col := case when 'id' = any (t.cols)
                      and (select format_type(a.atttypid, a.atttypmod) from pg_attribute a
                            where a.attrelid = t.oid and a.attname = 'id') = 'uuid'
                     then 'id' else '' end;
    v_project_col := case when t.relname = 'projects' then 'id'
                          when 'project_id' = any (t.cols) then 'project_id' else '' end;
    v_skip_cols := array(
      select a.attname::text from pg_attribute a
       where a.attrelid = t.oid and a.attnum > 0 and not a.attisdropped
         and (format_type(a.atttypid, null) in ('tsvector', 'vector', 'public.vector')
              or coalesce(col_description(t.oid, a.attnum), '') like '%[no-audit]%')
       order by a.attnum);
    execute format(
      'create trigger audit_record_change after insert or update or delete on %s '
      'for each row execute function audit.record_change(%L, %L, %L, %L, %L)',
      t.tbl, audit.entity_type_for(t.relname), v_tenant_col, v_id_col, v_project_col,
      v_skip_cols::text);
  end loop;
end
$$;

-- ---------------------------------------------------------------------------------------
-- The SQL API: change feed, audit queries, story history, chain verification.
set role loopctl_owner;

-- Readers seal their tenant first so what they read is fresh. In a read-only transaction
-- (GET through a gateway that opens one) they skip it: the worker seals every second and
-- the feed stays correct, only up to a second staler.
create or replace function app.seal_for_reader(p_tenant_id uuid) returns void
language plpgsql volatile as $$
begin
  if current_setting('transaction_read_only') = 'off' then
    perform audit.seal(p_tenant_id);
  end if;
end
$$;

-- One entry as the API shows it.
create or replace function app.audit_entry_json(e audit.entries, p_seq bigint) returns jsonb
language sql immutable as $$
  select jsonb_build_object(
    'cursor', p_seq, 'seq', p_seq, 'id', e.id, 'occurred_at', e.occurred_at,
    'action', e.action, 'entity_type', e.entity_type, 'entity_id', e.entity_id,
    'project_id', e.project_id,
    'actor', jsonb_build_object('key_id', e.actor_key_id, 'agent_id', e.actor_agent_id,
                                'role', e.actor_role, 'lineage', to_jsonb(e.actor_lineage)),
    'request_id', e.request_id)
$$;

-- The change feed (SPEC §6): entries after a cursor, in chain order.
--   since: a cursor (chain seq, from next_cursor) or an ISO-8601 timestamp (entries that
--          occurred at or after it); null = from the start.
-- {data: [{cursor, id, occurred_at, action, entity_type, entity_id, project_id, actor,
--          request_id, new_state (old_state for deletes)}], has_more, next_cursor}.
-- The cursor is the chain seq: sealers publish seqs in order, so a reader never sees seq
-- n+1 before seq n, and entries sharing a timestamp are never skipped.
create or replace function api.changes(
  since text default null, project_id uuid default null, entity_type text default null,
  action text default null, "limit" integer default 100
) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
declare
  v_me     app.identity;
  v_cursor bigint := 0;
  v_since  timestamptz;
  v_text   text;
  v_limit  integer := coalesce(changes."limit", 100);
  v_result jsonb;
begin
  v_me := app.require_identity();
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'changes');
  if v_limit < 1 or v_limit > 1000 then
    perform app.raise_error(422, 'invalid_limit', 'limit must be between 1 and 1000',
                            jsonb_build_object('limit', changes."limit", 'min', 1, 'max', 1000));
  end if;
  v_text := nullif(btrim(since), '');
  if v_text is null then
    v_cursor := 0;
  elsif v_text ~ '^[0-9]{1,18}$' then
    v_cursor := v_text::bigint;
  else
    if v_text ~ '^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|z|[+-]\d{2}(:?\d{2})?)?)?$' then
      begin
        v_since := v_text::timestamptz;
      exception when others then
        v_since := null;  -- e.g. 2026-13-45: refused below
      end;
    end if;
    if v_since is null then
      perform app.raise_error(422, 'invalid_since',
        'since must be a cursor (a non-negative integer from next_cursor) or an ISO-8601 timestamp',
        jsonb_build_object('since', since), 'e.g. since=0 or since=2026-01-01T00:00:00Z');
    end if;
  end if;

  perform app.seal_for_reader(v_me.tenant_id);

  -- One statement, one snapshot: the page and the head agree.
  with head as (
    select coalesce(max(c.seq), 0) as seq from audit.chain c where c.tenant_id = v_me.tenant_id
  ), page as (
    select c.seq, e as entry
      from audit.chain c join audit.entries e on e.id = c.entry_id
     where c.tenant_id = v_me.tenant_id and c.seq > v_cursor
       and (v_since is null or e.occurred_at >= v_since)
       and (changes.project_id is null or e.project_id = changes.project_id)
       and (changes.entity_type is null or e.entity_type = changes.entity_type)
       and (changes.action is null or e.action = changes.action)
     order by c.seq
     limit v_limit + 1
  ), numbered as (
    select p.*, row_number() over (order by p.seq) as rn from page p
  )
  select jsonb_build_object(
           'data', coalesce(jsonb_agg(
                      app.audit_entry_json(n.entry, n.seq)
                      || case when (n.entry).action = 'delete' or (n.entry).new_state is null
                              then jsonb_build_object('new_state', null,
                                                      'old_state', (n.entry).old_state)
                              else jsonb_build_object('new_state', (n.entry).new_state) end
                      order by n.seq) filter (where n.rn <= v_limit), '[]'::jsonb),
           'has_more', count(*) > v_limit,
           -- Nothing more matched up to the head: later pages start after it.
           'next_cursor', case when count(*) > v_limit
                               then max(n.seq) filter (where n.rn <= v_limit)
                               else greatest(v_cursor, (select h.seq from head h)) end)
    into v_result
    from numbered n;
  return v_result;
end
$$;

-- Audit queries (SPEC §6): GET /api/v1/audit?entity_type=&entity_id=&actor=&since=.
-- actor matches the acting key id or agent id. Oldest first. user|orchestrator only.
create or replace function api.audit_entries(
  entity_type text default null, entity_id uuid default null, actor uuid default null,
  since timestamptz default null, "limit" integer default 100, "offset" integer default 0
) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
declare
  v_me     app.identity;
  v_limit  integer := coalesce(audit_entries."limit", 100);
  v_offset integer := coalesce(audit_entries."offset", 0);
  v_rows   jsonb;
begin
  v_me := app.require_identity();
  perform app.require_role(v_me, array['user', 'orchestrator'], 'audit');
  if v_limit < 1 or v_limit > 1000 then
    perform app.raise_error(422, 'invalid_limit', 'limit must be between 1 and 1000',
      jsonb_build_object('limit', audit_entries."limit", 'min', 1, 'max', 1000));
  end if;
  if v_offset < 0 then
    perform app.raise_error(422, 'invalid_offset', 'offset must be 0 or more',
      jsonb_build_object('offset', audit_entries."offset"));
  end if;

  perform app.seal_for_reader(v_me.tenant_id);

  select coalesce(jsonb_agg(r.j order by r.id), '[]'::jsonb) into v_rows
    from (select e.id, app.audit_entry_json(e, c.seq)
                   || jsonb_build_object('sealed', c.seq is not null,
                                         'old_state', e.old_state, 'new_state', e.new_state)
                   as j
            from audit.entries e left join audit.chain c on c.entry_id = e.id
           where e.tenant_id = v_me.tenant_id
             and (audit_entries.entity_type is null or e.entity_type = audit_entries.entity_type)
             and (audit_entries.entity_id is null or e.entity_id = audit_entries.entity_id)
             and (audit_entries.actor is null or e.actor_key_id = audit_entries.actor
                  or e.actor_agent_id = audit_entries.actor)
             and (audit_entries.since is null or e.occurred_at >= audit_entries.since)
           order by e.id
           limit v_limit + 1 offset v_offset) r;

  return jsonb_build_object(
    'data', coalesce((select jsonb_agg(x order by ord) from jsonb_array_elements(v_rows)
                        with ordinality as t(x, ord) where ord <= v_limit), '[]'::jsonb),
    'meta', jsonb_build_object('limit', v_limit, 'offset', v_offset,
                               'has_more', jsonb_array_length(v_rows) > v_limit));
end
$$;

-- The custody chain of one story (SPEC §5 GET /stories/{id}/history): every audited change
-- of the story row and of rows that belong to it (criteria, reviews, verification results,
-- artifacts, dependencies), in chain order, with from -> to statuses and changed fields.
-- 404 for an unknown story or another tenant's (RLS hides both). Deleted stories keep
-- their history.
create or replace function api.story_history(story_id uuid) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
declare
  v_me      app.identity;
  v_entries jsonb;
begin
  v_me := app.require_identity();
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'story history');
  if story_history.story_id is null
     or (not exists (select 1 from app.stories s
                      where s.tenant_id = v_me.tenant_id and s.id = story_history.story_id)
         and not exists (select 1 from audit.entries e
                          where e.tenant_id = v_me.tenant_id and e.entity_type = 'story'
                            and e.entity_id = story_history.story_id)) then
    perform app.raise_error(404, 'story_not_found', 'story not found',
                            jsonb_build_object('story_id', story_history.story_id));
  end if;

  perform app.seal_for_reader(v_me.tenant_id);

  select coalesce(jsonb_agg(
           app.audit_entry_json(e, c.seq)
           || jsonb_build_object(
                'from', case when e.entity_type = 'story' and e.old_state is not null then
                          jsonb_build_object('agent_status', e.old_state ->> 'agent_status',
                                             'verified_status', e.old_state ->> 'verified_status') end,
                'to', case when e.entity_type = 'story' and e.new_state is not null then
                        jsonb_build_object('agent_status', e.new_state ->> 'agent_status',
                                           'verified_status', e.new_state ->> 'verified_status') end,
                'changes', (select coalesce(jsonb_object_agg(k.key, jsonb_build_object(
                                      'from', e.old_state -> k.key, 'to', e.new_state -> k.key)),
                                    '{}'::jsonb)
                              from jsonb_each(audit.significant(e.new_state)) k
                             where e.old_state is not null
                               and e.old_state -> k.key is distinct from k.value),
                'new_state', e.new_state, 'old_state', e.old_state)
           order by c.seq nulls last, e.id), '[]'::jsonb)
    into v_entries
    from audit.entries e left join audit.chain c on c.entry_id = e.id
   where e.tenant_id = v_me.tenant_id
     and ((e.entity_type = 'story' and e.entity_id = story_history.story_id)
          or (coalesce(e.new_state, e.old_state) ? 'story_id'
              and coalesce(e.new_state, e.old_state) ->> 'story_id' = story_history.story_id::text));

  return jsonb_build_object('data', v_entries,
                            'meta', jsonb_build_object('story_id', story_history.story_id));
end
$$;

-- GET /api/v1/audit/verify: seals, then verifies the caller's tenant chain.
create or replace function api.verify_audit_chain() returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity;
begin
  v_me := app.require_identity();
  perform app.require_role(v_me, array['user', 'orchestrator'], 'audit verify');
  perform app.seal_for_reader(v_me.tenant_id);
  return jsonb_build_object('data', audit.verify_chain(v_me.tenant_id));
end
$$;

reset role;
