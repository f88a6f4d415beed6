-- Webhooks (SPEC §10, issue #6): subscriptions, outbox -> deliveries, claiming with
-- SKIP LOCKED and a lease, retry schedule with jitter, endpoint disabling, test and replay.
--
-- Flow: a change calls app.emit_event (same transaction) -> the AFTER INSERT trigger on
-- app.events fans the event out into app.webhook_deliveries for every matching active
-- subscription of that tenant (still the same transaction: a rollback leaves nothing) ->
-- a worker (`loopctl worker`) claims due deliveries with app.webhook_claim, POSTs them and
-- reports each attempt with app.webhook_record_attempt, which decides in SQL what happens
-- next (succeeded, retry at a computed time, exhausted, endpoint disabled).

-- ---------------------------------------------------------------------------------------
-- Pure helpers (owner: loopctl_owner)
-- ---------------------------------------------------------------------------------------
set role loopctl_owner;

-- The event names of SPEC §10. Families (the part before the dot) may be subscribed to with
-- a wildcard ('story.*'); article events are a family by definition ('article.*').
create or replace function app.webhook_event_types() returns text[]
language sql immutable parallel safe as $$
  select array['story.status_changed', 'story.review_requested', 'story.review_completed',
               'story.verified', 'story.rejected', 'story.auto_reset', 'story.backfilled',
               'story.force_unclaimed', 'epic.completed', 'artifact.reported',
               'agent.registered', 'project.imported', 'token.budget_warning',
               'token.budget_exceeded', 'token.anomaly_detected', 'custody.violation',
               'article.*', 'webhook.test']
$$;

create or replace function app.webhook_event_matches(p_patterns text[], p_event_type text)
returns boolean
language sql immutable parallel safe as $$
  select exists (
    select 1 from unnest(p_patterns) p
     where p = '*' or p = p_event_type
        or (right(p, 2) = '.*' and starts_with(p_event_type, left(p, -1))))
$$;

-- Validated, de-duplicated, sorted event patterns, or a 422 naming the unknown ones.
create or replace function app.webhook_validate_events(p_events text[]) returns text[]
language plpgsql stable as $$
declare
  v_known text[] := app.webhook_event_types();
  v_families text[];
  v_unknown text[];
  v_clean text[];
begin
  if p_events is null or cardinality(p_events) = 0 then
    perform app.raise_error(422, 'invalid_events', 'events must list at least one event name',
      jsonb_build_object('known_events', to_jsonb(v_known)), 'use "*" for every event');
  end if;
  if cardinality(p_events) > 50 then
    perform app.raise_error(422, 'invalid_events', 'at most 50 event names');
  end if;
  select array_agg(distinct split_part(k, '.', 1)) into v_families from unnest(v_known) k;
  select array_agg(e order by e) into v_unknown
    from unnest(p_events) e
   where not (e = '*' or e = any (v_known)
              or (e ~ '^[a-z]+\.\*$' and split_part(e, '.', 1) = any (v_families))
              or e ~ '^article\.[a-z_]{1,60}$');
  if v_unknown is not null then
    perform app.raise_error(422, 'unknown_event', format('unknown event name(s): %s',
      array_to_string(v_unknown, ', ')),
      jsonb_build_object('unknown', to_jsonb(v_unknown), 'known_events', to_jsonb(v_known)),
      'event names are listed in SPEC §10; a family wildcard such as "story.*" is allowed');
  end if;
  select array_agg(distinct e order by e) into v_clean from unnest(p_events) e;
  return v_clean;
end
$$;

-- Addresses a webhook must never reach unless the installation allows private targets:
-- loopback, private, link-local, CGNAT, multicast, reserved, unspecified, IPv4-mapped IPv6.
create or replace function app.is_private_address(p_addr inet) returns boolean
language sql immutable parallel safe as $$
  select case when family(p_addr) = 4 then
           p_addr << any (array['0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8',
             '169.254.0.0/16', '172.16.0.0/12', '192.0.0.0/24', '192.0.2.0/24',
             '192.168.0.0/16', '198.18.0.0/15', '198.51.100.0/24', '203.0.113.0/24',
             '224.0.0.0/4', '240.0.0.0/4']::inet[])
         else
           p_addr << any (array['::/127', '::ffff:0:0/96', '64:ff9b::/96', '100::/64',
             '2001:db8::/32', 'fc00::/7', 'fe80::/10', 'fec0::/10', 'ff00::/8']::inet[])
           or p_addr = '::'::inet or p_addr = '::1'::inet
         end
$$;

-- The installation's choice, read from the database-level setting that `loopctl serve` and
-- `loopctl worker` write from LOOPCTL_WEBHOOKS_ALLOW_PRIVATE (ALTER DATABASE ... SET). It is
-- read from the catalog, not current_setting(), so a session cannot grant it to itself.
create or replace function app.webhooks_allow_private() returns boolean
language sql stable as $$
  select coalesce(bool_or(split_part(c, '=', 2) in ('true', 'on', '1', 'yes')), false)
    from pg_catalog.pg_db_role_setting s
    join pg_catalog.pg_database d on d.oid = s.setdatabase and d.datname = current_database()
    cross join lateral unnest(s.setconfig) c
   where s.setrole = 0 and c like 'loopctl.webhooks_allow_private=%'
$$;

reset role;

-- Name resolution needs the resolver, which SQL does not have (untrusted language: created
-- by the migrating superuser, executable only by loopctl_owner through grants_webhooks).
create or replace function app.resolve_host_addresses(p_host text) returns text[]
language plpython3u volatile strict as $$
import socket
try:
    infos = socket.getaddrinfo(p_host, None, proto=socket.IPPROTO_TCP)
except (socket.gaierror, UnicodeError, OSError):
    return []
return sorted({info[4][0].split('%')[0] for info in infos})
$$;

set role loopctl_owner;

-- A subscription URL, checked: http(s), a host, no credentials, a sane length, and (unless
-- the installation allows it) no private, loopback or link-local target — the literal host,
-- well-known local names and every address the name resolves to now. The worker checks the
-- resolved addresses again before every attempt (DNS can change). 422 otherwise.
create or replace function app.webhook_check_url(p_url text) returns text
language plpgsql volatile as $$
declare
  m text[];
  v_host text;
  v_addr inet;
  v_addrs text[];
  v_bad text[];
begin
  if p_url is null or length(p_url) > 2048 or p_url ~ '\s' then
    perform app.raise_error(422, 'invalid_webhook_url',
      'url must be an http(s) URL of at most 2048 characters without spaces');
  end if;
  m := regexp_match(p_url,
    '^(https?)://([^/?#@]*@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:[0-9]{1,5})?([/?#].*)?$');
  if m is null then
    perform app.raise_error(422, 'invalid_webhook_url',
      format('not an http(s) URL with a host: %s', left(p_url, 200)),
      jsonb_build_object('url', left(p_url, 200)), 'example: https://hooks.example.com/loopctl');
  end if;
  if m[2] is not null then
    perform app.raise_error(422, 'invalid_webhook_url',
      'credentials in the URL are not allowed; authenticate with the webhook signature');
  end if;
  if m[4] is not null and substr(m[4], 2)::int not between 1 and 65535 then
    perform app.raise_error(422, 'invalid_webhook_url', 'port out of range');
  end if;
  v_host := lower(trim(both '[]' from m[3]));
  if app.webhooks_allow_private() then
    return p_url;
  end if;
  begin
    v_addr := v_host::inet;
  exception when others then
    v_addr := null;
  end;
  if v_addr is not null then
    v_addrs := array[host(v_addr)];
  elsif v_host ~ '^[0-9.]+$' or v_host ~ '^0x' then
    -- Numeric forms the resolver would read as an address (127.1, 2130706433, 0x7f.1).
    perform app.raise_error(422, 'private_webhook_target',
      format('%s is not a plain public address', v_host));
  elsif v_host = 'localhost' or v_host ~ '\.(localhost|local|internal|localdomain|home\.arpa)\.?$' then
    v_addrs := array['127.0.0.1'];
  else
    v_addrs := app.resolve_host_addresses(v_host);
  end if;
  select array_agg(a) into v_bad from unnest(v_addrs) a where app.is_private_address(a::inet);
  if v_bad is not null then
    perform app.raise_error(422, 'private_webhook_target',
      format('%s resolves to a private, loopback or link-local address', v_host),
      jsonb_build_object('host', v_host, 'addresses', to_jsonb(v_bad)),
      'webhook targets must be public; the operator may set LOOPCTL_WEBHOOKS_ALLOW_PRIVATE=true');
  end if;
  return p_url;
end
$$;

-- The webhook-id header value: stable per (subscription, event).
create or replace function app.webhook_message_id(p_webhook_id uuid, p_event_id bigint)
returns text language sql immutable parallel safe as $$
  select 'msg_' || replace(p_webhook_id::text, '-', '') || '_' || p_event_id
$$;

create or replace function app.webhook_json(w app.webhooks) returns jsonb
language sql stable as $$
  select jsonb_build_object('id', w.id, 'url', w.url, 'events', to_jsonb(w.events),
    'project_id', w.project_id, 'description', w.description, 'status', w.status,
    'disabled_reason', w.disabled_reason, 'consecutive_exhaustions', w.consecutive_exhaustions,
    'created_at', w.created_at, 'updated_at', w.updated_at)
$$;

create or replace function app.webhook_delivery_json(d app.webhook_deliveries) returns jsonb
language sql stable as $$
  select jsonb_build_object('id', d.id, 'webhook_id', d.webhook_id, 'event_id', d.event_id,
    'event_type', d.event_type, 'message_id', d.message_id, 'kind', d.kind,
    'replay_of', d.replay_of, 'status', d.status, 'attempts', d.attempts,
    'next_attempt_at', case when d.status in ('pending', 'failed') then d.next_attempt_at end,
    'lease_until', d.lease_until, 'last_status_code', d.last_status_code,
    'last_error', d.last_error, 'delivered_at', d.delivered_at, 'created_at', d.created_at)
$$;

-- The caller's webhook or a 404 (another tenant's id is invisible under RLS: also 404).
create or replace function app.webhook_for_update(p_tenant_id uuid, p_webhook_id uuid)
returns app.webhooks
language plpgsql volatile as $$
declare
  w app.webhooks;
begin
  select * into w from app.webhooks
   where tenant_id = p_tenant_id and id = p_webhook_id for update;
  if not found then
    perform app.raise_error(404, 'webhook_not_found', 'no such webhook',
      jsonb_build_object('webhook_id', p_webhook_id));
  end if;
  return w;
end
$$;

reset role;

-- ---------------------------------------------------------------------------------------
-- Delivery machinery (owner: loopctl_worker, which works across tenants; every statement
-- names the tenant explicitly)
-- ---------------------------------------------------------------------------------------
set role loopctl_worker;

-- Fan-out: one delivery per matching active subscription, in the event's transaction.
-- 'webhook.test' goes only to the subscription named in its payload (api.test_webhook).
create or replace function app.webhook_fanout() returns trigger
language plpgsql security definer set search_path = pg_catalog, app as $$
begin
  if new.event_type = 'webhook.test' then
    if coalesce(new.payload ->> 'webhook_id', '')
       ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
      insert into app.webhook_deliveries
             (tenant_id, webhook_id, event_id, event_type, message_id, kind)
      select new.tenant_id, w.id, new.id, new.event_type, app.webhook_message_id(w.id, new.id),
             'test'
        from app.webhooks w
       where w.tenant_id = new.tenant_id and w.id = (new.payload ->> 'webhook_id')::uuid;
    end if;
    return null;
  end if;
  insert into app.webhook_deliveries (tenant_id, webhook_id, event_id, event_type, message_id)
  select new.tenant_id, w.id, new.id, new.event_type, app.webhook_message_id(w.id, new.id)
    from app.webhooks w
   where w.tenant_id = new.tenant_id
     and w.status = 'active'
     and (w.project_id is null or w.project_id = new.project_id)
     and app.webhook_event_matches(w.events, new.event_type);
  return null;
end
$$;

-- The request body (Standard Webhooks payload shape: type, timestamp, data), built once in
-- SQL so every attempt of a delivery sends the same JSON.
create or replace function app.webhook_body(e app.events) returns text
language sql stable as $$
  select jsonb_build_object(
    'type', e.event_type,
    'timestamp', to_char(e.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'event_id', e.id,
    'tenant_id', e.tenant_id,
    'project_id', e.project_id,
    'entity_type', e.entity_type,
    'entity_id', e.entity_id,
    'data', e.payload)::text
$$;

-- Claims up to p_limit due deliveries for one worker: FOR UPDATE SKIP LOCKED, so concurrent
-- workers never take the same row, and a lease (visibility timeout): a delivery whose
-- worker died becomes due again when its lease expires. Each claim is a new attempt number.
create or replace function app.webhook_claim(
  p_worker text, p_limit integer, p_lease_seconds double precision
) returns table (
  tenant_id uuid, delivery_id uuid, webhook_id uuid, attempt integer, lease_token uuid,
  message_id text, url text, secret text, event_type text, body text
)
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
begin
  if p_limit is null or p_limit < 1 or p_lease_seconds is null or p_lease_seconds <= 0 then
    raise exception 'webhook_claim: p_limit >= 1 and p_lease_seconds > 0 required';
  end if;
  return query
  with due as (
    select d.tenant_id, d.id, d.status as old_status, d.attempts as old_attempts,
           d.leased_by as old_worker
      from app.webhook_deliveries d
      join app.webhooks w on w.tenant_id = d.tenant_id and w.id = d.webhook_id
     where d.status in ('pending', 'delivering', 'failed')
       and d.next_attempt_at <= clock_timestamp()
       and w.status = 'active'
     order by d.next_attempt_at
     limit p_limit
     for update of d skip locked
  ), lost as (
    -- An expired lease: the worker that held it never reported. Log that attempt.
    insert into app.webhook_attempts (tenant_id, delivery_id, webhook_id, attempt, started_at,
                                      error, worker, lease_held)
    select d.tenant_id, d.id, d.webhook_id, due.old_attempts, d.updated_at,
           'lease expired: the worker was lost before it reported this attempt',
           due.old_worker, false
      from due join app.webhook_deliveries d on d.tenant_id = due.tenant_id and d.id = due.id
     where due.old_status = 'delivering'
    on conflict (tenant_id, delivery_id, attempt) do nothing
  ), claimed as (
    update app.webhook_deliveries d
       set status = 'delivering',
           attempts = d.attempts + 1,
           lease_token = gen_random_uuid(),
           lease_until = clock_timestamp() + make_interval(secs => p_lease_seconds),
           next_attempt_at = clock_timestamp() + make_interval(secs => p_lease_seconds),
           leased_by = p_worker,
           updated_at = clock_timestamp()
      from due
     where d.tenant_id = due.tenant_id and d.id = due.id
    returning d.*
  )
  select c.tenant_id, c.id, c.webhook_id, c.attempts, c.lease_token, c.message_id, w.url,
         s.secret, c.event_type, app.webhook_body(e)
    from claimed c
    join app.webhooks w on w.tenant_id = c.tenant_id and w.id = c.webhook_id
    join app.webhook_secrets s on s.tenant_id = c.tenant_id and s.webhook_id = c.webhook_id
    join app.events e on e.tenant_id = c.tenant_id and e.id = c.event_id;
end
$$;

-- Records one HTTP attempt and decides, in SQL, what happens next. Returns the delivery's
-- new status: 'succeeded', 'failed' (retry scheduled), 'exhausted', or 'lease_lost' (the
-- lease had expired and another worker owns the delivery: logged, decides nothing) or
-- 'gone' (the subscription was deleted meanwhile).
-- Retry: the n-th failed attempt waits p_schedule[n] seconds, +/- p_jitter (fraction), at
-- least Retry-After (capped at a day) when the receiver sent one; after
-- cardinality(p_schedule) retries the delivery is exhausted. p_disable_after exhausted
-- deliveries in a row disable the subscription.
create or replace function app.webhook_record_attempt(
  p_tenant_id uuid, p_delivery_id uuid, p_lease_token uuid, p_attempt integer,
  p_worker text, p_started_at timestamptz, p_duration_ms integer,
  p_status_code integer, p_error text, p_response_snippet text,
  p_retry_after_seconds double precision, p_schedule double precision[],
  p_jitter double precision, p_disable_after integer
) returns text
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
declare
  d app.webhook_deliveries;
  v_held boolean;
  v_delay double precision;
  v_count integer;
begin
  if p_schedule is null or array_position(p_schedule, null) is not null
     or exists (select 1 from unnest(p_schedule) x where x < 0)
     or p_jitter is null or p_jitter not between 0 and 1
     or p_disable_after is null or p_disable_after < 1 then
    raise exception 'webhook_record_attempt: invalid retry configuration';
  end if;
  select * into d from app.webhook_deliveries
   where tenant_id = p_tenant_id and id = p_delivery_id for update;
  if not found then
    return 'gone';
  end if;
  v_held := d.status = 'delivering' and d.lease_token = p_lease_token and d.attempts = p_attempt;
  insert into app.webhook_attempts (tenant_id, delivery_id, webhook_id, attempt, started_at,
         duration_ms, status_code, error, response_snippet, worker, lease_held)
  values (p_tenant_id, p_delivery_id, d.webhook_id, p_attempt, p_started_at, p_duration_ms,
          p_status_code, left(p_error, 1000), left(p_response_snippet, 1000), p_worker, v_held)
  on conflict (tenant_id, delivery_id, attempt) do update
     set duration_ms = excluded.duration_ms, status_code = excluded.status_code,
         error = excluded.error, response_snippet = excluded.response_snippet,
         worker = excluded.worker, lease_held = false;
  if not v_held then
    return 'lease_lost';
  end if;

  if p_status_code between 200 and 299 then
    update app.webhook_deliveries
       set status = 'succeeded', delivered_at = clock_timestamp(), lease_until = null,
           lease_token = null, last_status_code = p_status_code, last_error = null,
           updated_at = clock_timestamp()
     where tenant_id = p_tenant_id and id = p_delivery_id;
    update app.webhooks set consecutive_exhaustions = 0, updated_at = now()
     where tenant_id = p_tenant_id and id = d.webhook_id and consecutive_exhaustions <> 0;
    return 'succeeded';
  end if;

  if d.attempts > cardinality(p_schedule) then
    update app.webhook_deliveries
       set status = 'exhausted', lease_until = null, lease_token = null,
           last_status_code = p_status_code, last_error = left(p_error, 1000),
           updated_at = clock_timestamp()
     where tenant_id = p_tenant_id and id = p_delivery_id;
    update app.webhooks
       set consecutive_exhaustions = consecutive_exhaustions + 1, updated_at = now()
     where tenant_id = p_tenant_id and id = d.webhook_id
    returning consecutive_exhaustions into v_count;
    if v_count >= p_disable_after then
      update app.webhooks
         set status = 'disabled', updated_at = now(),
             disabled_reason = format('%s deliveries in a row exhausted their retries', v_count)
       where tenant_id = p_tenant_id and id = d.webhook_id and status = 'active';
    end if;
    return 'exhausted';
  end if;

  v_delay := p_schedule[d.attempts] * (1 + p_jitter * (2 * random() - 1));
  if p_retry_after_seconds is not null and p_retry_after_seconds > 0 then
    v_delay := greatest(v_delay, least(p_retry_after_seconds, 86400));
  end if;
  update app.webhook_deliveries
     set status = 'failed', lease_until = null, lease_token = null,
         next_attempt_at = clock_timestamp() + make_interval(secs => v_delay),
         last_status_code = p_status_code, last_error = left(p_error, 1000),
         updated_at = clock_timestamp()
   where tenant_id = p_tenant_id and id = p_delivery_id;
  return 'failed';
end
$$;

-- Seconds until the next delivery becomes claimable (<= 0: now), null when none is waiting:
-- the worker sleeps that long instead of polling.
create or replace function app.webhook_next_due() returns double precision
language sql stable security definer set search_path = pg_catalog, app as $$
  select extract(epoch from min(d.next_attempt_at) - clock_timestamp())::double precision
    from app.webhook_deliveries d
    join app.webhooks w on w.tenant_id = d.tenant_id and w.id = d.webhook_id
   where d.status in ('pending', 'delivering', 'failed') and w.status = 'active'
$$;

reset role;

-- The outbox trigger (on the audit area's table; dropped with the function on revert).
drop trigger if exists webhook_fanout on app.events;
create trigger webhook_fanout after insert on app.events
  for each row execute function app.webhook_fanout();

-- ---------------------------------------------------------------------------------------
-- API (user keys write; user and orchestrator keys read)
-- ---------------------------------------------------------------------------------------
set role loopctl_owner;

create or replace function api.create_webhook(
  url text, events text[], project_id uuid default null, description text default null
) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  p_url text := create_webhook.url;
  p_events text[] := create_webhook.events;
  p_project_id uuid := create_webhook.project_id;
  p_description text := create_webhook.description;
  v_me app.identity := app.require_identity();
  v_url text;
  v_events text[];
  v_secret text;
  w app.webhooks;
begin
  perform app.require_role(v_me, array['user'], 'creating a webhook');
  v_url := app.webhook_check_url(p_url);
  v_events := app.webhook_validate_events(p_events);
  if length(p_description) > 500 then
    perform app.raise_error(422, 'invalid_description', 'description: at most 500 characters');
  end if;
  if p_project_id is not null and not exists (
       select 1 from app.projects where tenant_id = v_me.tenant_id and id = p_project_id) then
    perform app.raise_error(404, 'project_not_found', 'no such project',
      jsonb_build_object('project_id', p_project_id));
  end if;
  -- Serialise creations per tenant so the limit holds under concurrency.
  perform pg_advisory_xact_lock(hashtextextended('loopctl.webhooks:' || v_me.tenant_id, 0));
  if (select count(*) from app.webhooks where tenant_id = v_me.tenant_id) >= 10 then
    perform app.raise_error(409, 'webhook_limit_reached',
      'a tenant may have at most 10 webhooks', jsonb_build_object('limit', 10),
      'delete an unused webhook first');
  end if;
  insert into app.webhooks (tenant_id, url, events, project_id, description, created_by_key_id)
  values (v_me.tenant_id, v_url, v_events, p_project_id, p_description, v_me.key_id)
  returning * into w;
  v_secret := 'whsec_' || encode(public.gen_random_bytes(32), 'base64');
  insert into app.webhook_secrets (tenant_id, webhook_id, secret)
  values (w.tenant_id, w.id, v_secret);
  return app.webhook_json(w) || jsonb_build_object('secret', v_secret);
end
$$;

create or replace function api.list_webhooks() returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  perform app.require_role(v_me, array['user', 'orchestrator'], 'listing webhooks');
  return coalesce((select jsonb_agg(app.webhook_json(w) order by w.created_at, w.id)
                     from app.webhooks w where w.tenant_id = v_me.tenant_id), '[]'::jsonb);
end
$$;

create or replace function api.get_webhook(webhook_id uuid) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  p_id uuid := get_webhook.webhook_id;
  v_me app.identity := app.require_identity();
  w app.webhooks;
begin
  perform app.require_role(v_me, array['user', 'orchestrator'], 'reading a webhook');
  select * into w from app.webhooks where tenant_id = v_me.tenant_id and id = p_id;
  if not found then
    perform app.raise_error(404, 'webhook_not_found', 'no such webhook',
      jsonb_build_object('webhook_id', p_id));
  end if;
  return app.webhook_json(w);
end
$$;

-- PATCH semantics: null leaves a field unchanged; p_clear_project removes the project filter.
-- p_status 'active' re-enables a disabled endpoint and resets its exhaustion count.
create or replace function api.update_webhook(
  webhook_id uuid, url text default null, events text[] default null,
  project_id uuid default null, description text default null,
  status text default null, clear_project boolean default false
) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  p_id uuid := update_webhook.webhook_id;
  p_url text := update_webhook.url;
  p_events text[] := update_webhook.events;
  p_project_id uuid := update_webhook.project_id;
  p_description text := update_webhook.description;
  p_status text := update_webhook.status;
  p_clear_project boolean := coalesce(update_webhook.clear_project, false);
  v_me app.identity := app.require_identity();
  w app.webhooks;
begin
  perform app.require_role(v_me, array['user'], 'updating a webhook');
  w := app.webhook_for_update(v_me.tenant_id, p_id);
  if p_status is not null and p_status not in ('active', 'disabled') then
    perform app.raise_error(422, 'invalid_status', 'status must be active or disabled',
      jsonb_build_object('status', p_status));
  end if;
  if p_project_id is not null and p_clear_project then
    perform app.raise_error(422, 'invalid_project', 'give project_id or clear_project, not both');
  end if;
  if p_project_id is not null and not exists (
       select 1 from app.projects where tenant_id = v_me.tenant_id and id = p_project_id) then
    perform app.raise_error(404, 'project_not_found', 'no such project',
      jsonb_build_object('project_id', p_project_id));
  end if;
  if length(p_description) > 500 then
    perform app.raise_error(422, 'invalid_description', 'description: at most 500 characters');
  end if;
  update app.webhooks set
    url = coalesce(case when p_url is not null then app.webhook_check_url(p_url) end, url),
    events = coalesce(case when p_events is not null then app.webhook_validate_events(p_events)
                      end, events),
    project_id = case when p_clear_project then null else coalesce(p_project_id, project_id) end,
    description = coalesce(p_description, description),
    status = coalesce(p_status, status),
    disabled_reason = case when p_status = 'active' then null
                           when p_status = 'disabled' and status = 'active'
                             then 'disabled by a user' else disabled_reason end,
    consecutive_exhaustions = case when p_status = 'active' then 0
                                   else consecutive_exhaustions end,
    updated_at = now()
  where tenant_id = v_me.tenant_id and id = p_id
  returning * into w;
  return app.webhook_json(w);
end
$$;

create or replace function api.delete_webhook(webhook_id uuid) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  p_id uuid := delete_webhook.webhook_id;
  v_me app.identity := app.require_identity();
begin
  perform app.require_role(v_me, array['user'], 'deleting a webhook');
  perform app.webhook_for_update(v_me.tenant_id, p_id);
  delete from app.webhooks where tenant_id = v_me.tenant_id and id = p_id;
  return jsonb_build_object('id', p_id, 'deleted', true);
end
$$;

-- The delivery log of one webhook, newest first, each delivery with its attempts.
create or replace function api.webhook_deliveries(
  webhook_id uuid, row_limit integer default 50, row_offset integer default 0
) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  p_webhook_id uuid := webhook_deliveries.webhook_id;
  p_limit integer := webhook_deliveries.row_limit;
  p_offset integer := webhook_deliveries.row_offset;
  v_me app.identity := app.require_identity();
  v_total bigint;
  v_rows jsonb;
begin
  perform app.require_role(v_me, array['user', 'orchestrator'], 'reading webhook deliveries');
  if not exists (select 1 from app.webhooks where tenant_id = v_me.tenant_id and id = p_webhook_id)
  then
    perform app.raise_error(404, 'webhook_not_found', 'no such webhook',
      jsonb_build_object('webhook_id', p_webhook_id));
  end if;
  if p_limit is null or p_limit not between 1 and 500 or p_offset is null or p_offset < 0 then
    perform app.raise_error(422, 'invalid_pagination', 'limit must be 1..500 and offset >= 0',
      jsonb_build_object('limit', p_limit, 'offset', p_offset));
  end if;
  select count(*) into v_total from app.webhook_deliveries
   where tenant_id = v_me.tenant_id and webhook_id = p_webhook_id;
  select coalesce(jsonb_agg(x.j order by x.created_at desc, x.id), '[]'::jsonb) into v_rows
    from (select d.created_at, d.id,
                 app.webhook_delivery_json(d) || jsonb_build_object('attempt_log',
                   (select coalesce(jsonb_agg(jsonb_build_object(
                      'attempt', a.attempt, 'started_at', a.started_at,
                      'duration_ms', a.duration_ms, 'status_code', a.status_code,
                      'error', a.error, 'response_snippet', a.response_snippet,
                      'lease_held', a.lease_held) order by a.attempt), '[]'::jsonb)
                      from app.webhook_attempts a
                     where a.tenant_id = d.tenant_id and a.delivery_id = d.id)) as j
            from app.webhook_deliveries d
           where d.tenant_id = v_me.tenant_id and d.webhook_id = p_webhook_id
           order by d.created_at desc, d.id
           limit p_limit offset p_offset) x;
  return jsonb_build_object('data', v_rows, 'meta', jsonb_build_object(
    'limit', p_limit, 'offset', p_offset, 'total', v_total,
    'has_more', p_offset + jsonb_array_length(v_rows) < v_total));
end
$$;

-- Sends a 'webhook.test' event to this endpoint only (through the outbox, like any event).
create or replace function api.test_webhook(webhook_id uuid) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  p_webhook_id uuid := test_webhook.webhook_id;
  v_me app.identity := app.require_identity();
  w app.webhooks;
  v_event_id bigint;
  d app.webhook_deliveries;
begin
  perform app.require_role(v_me, array['user'], 'testing a webhook');
  w := app.webhook_for_update(v_me.tenant_id, p_webhook_id);
  if w.status <> 'active' then
    perform app.raise_error(409, 'webhook_disabled', 'the webhook is disabled',
      jsonb_build_object('webhook_id', w.id, 'disabled_reason', w.disabled_reason),
      'PATCH it with status "active" first');
  end if;
  v_event_id := app.emit_event(v_me.tenant_id, 'webhook.test',
    jsonb_build_object('webhook_id', w.id, 'message', 'test event from loopctl'),
    w.project_id, 'webhook', w.id);
  select * into d from app.webhook_deliveries
   where tenant_id = v_me.tenant_id and webhook_id = w.id and event_id = v_event_id;
  return app.webhook_delivery_json(d);
end
$$;

-- Replays one delivery (p_delivery_id) or every event since a time (p_since) that matches the
-- subscription now, as new deliveries with the original webhook-id (receivers that already
-- processed an event deduplicate it). Events from while the endpoint was disabled are
-- included: this is how a re-enabled endpoint catches up.
create or replace function api.replay_webhook(
  webhook_id uuid, delivery_id uuid default null, since timestamptz default null
) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  p_webhook_id uuid := replay_webhook.webhook_id;
  p_delivery_id uuid := replay_webhook.delivery_id;
  p_since timestamptz := replay_webhook.since;
  v_me app.identity := app.require_identity();
  w app.webhooks;
  src app.webhook_deliveries;
  v_count integer;
  v_max constant integer := 10000;
begin
  perform app.require_role(v_me, array['user'], 'replaying webhook deliveries');
  w := app.webhook_for_update(v_me.tenant_id, p_webhook_id);
  if (p_delivery_id is null) = (p_since is null) then
    perform app.raise_error(422, 'invalid_replay', 'give exactly one of delivery_id or since');
  end if;
  if w.status <> 'active' then
    perform app.raise_error(409, 'webhook_disabled', 'the webhook is disabled',
      jsonb_build_object('webhook_id', w.id), 'PATCH it with status "active" first');
  end if;
  if p_delivery_id is not null then
    select * into src from app.webhook_deliveries
     where tenant_id = v_me.tenant_id and id = p_delivery_id and webhook_id = w.id;
    if not found then
      perform app.raise_error(404, 'delivery_not_found', 'no such delivery of this webhook',
        jsonb_build_object('delivery_id', p_delivery_id));
    end if;
    insert into app.webhook_deliveries (tenant_id, webhook_id, event_id, event_type,
                                        message_id, kind, replay_of)
    values (src.tenant_id, src.webhook_id, src.event_id, src.event_type, src.message_id,
            'replay', src.id)
    returning * into src;
    return jsonb_build_object('replayed', 1, 'deliveries', jsonb_build_array(src.id));
  end if;
  if p_since > now() then
    perform app.raise_error(422, 'invalid_replay', 'since is in the future',
      jsonb_build_object('since', p_since));
  end if;
  select count(*) into v_count from app.events e
   where e.tenant_id = v_me.tenant_id and e.created_at >= p_since
     and e.event_type <> 'webhook.test'
     and (w.project_id is null or e.project_id = w.project_id)
     and app.webhook_event_matches(w.events, e.event_type);
  if v_count > v_max then
    perform app.raise_error(422, 'replay_too_large',
      format('%s events since %s; at most %s per replay', v_count, p_since, v_max),
      jsonb_build_object('events', v_count, 'limit', v_max), 'choose a later since');
  end if;
  with ins as (
    insert into app.webhook_deliveries (tenant_id, webhook_id, event_id, event_type,
                                        message_id, kind)
    select e.tenant_id, w.id, e.id, e.event_type, app.webhook_message_id(w.id, e.id), 'replay'
      from app.events e
     where e.tenant_id = v_me.tenant_id and e.created_at >= p_since
       and e.event_type <> 'webhook.test'
       and (w.project_id is null or e.project_id = w.project_id)
       and app.webhook_event_matches(w.events, e.event_type)
     order by e.id
    returning id
  )
  select count(*) into v_count from ins;
  return jsonb_build_object('replayed', v_count, 'since', p_since);
end
$$;

reset role;
