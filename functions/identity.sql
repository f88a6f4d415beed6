-- Who is calling: one small resolver that every policy and function reuses.
--
-- The request identity arrives as PostgREST sets it: `request.jwt.claims` with the API role
-- and `key_hash` (the SHA-256 of the caller's raw key). Resolving by the hash, never by a
-- bare id, means direct SQL as an API role cannot impersonate a key it does not hold.
-- Analyst login roles are resolved from session_user and ignore request settings entirely.

set role loopctl_auth;

create or replace function app.current_identity() returns app.identity
language plpgsql stable security definer
set search_path = pg_catalog, app as $$
declare
  v_claims  jsonb;
  v_ident   app.identity;
begin
  select ar.tenant_id into v_ident.tenant_id
    from app.analyst_roles ar where ar.role_name = session_user;
  if found then
    v_ident.role := 'analyst';
    return v_ident;
  end if;

  begin
    v_claims := nullif(current_setting('request.jwt.claims', true), '')::jsonb;
  exception when others then
    return null;  -- unparsable claims identify nobody
  end;
  if v_claims is null or jsonb_typeof(v_claims) <> 'object'
     or coalesce(v_claims ->> 'key_hash', '') !~ '^[0-9a-f]{64}$' then
    return null;
  end if;

  select k.tenant_id, k.id, k.role, k.agent_id, a.lineage
    into v_ident.tenant_id, v_ident.key_id, v_ident.role, v_ident.agent_id, v_ident.lineage
    from app.api_keys k
    join app.tenants t on t.id = k.tenant_id
    left join app.agents a on a.tenant_id = k.tenant_id and a.id = k.agent_id
   where k.key_hash = v_claims ->> 'key_hash'
     and k.revoked_at is null
     and (k.expires_at is null or k.expires_at > now())
     and t.status = 'active';
  if not found then
    return null;
  end if;
  -- The database role the request runs as must be the key's own role: a key cannot be
  -- used under a more privileged API role.
  if current_setting('role', true) is distinct from 'loopctl_' || v_ident.role
     and current_setting('role', true) not in ('none', '') then
    return null;
  end if;
  v_ident.lineage_root := coalesce(v_ident.lineage[1], v_ident.agent_id);
  return v_ident;
end
$$;

create or replace function app.current_tenant_id() returns uuid
language sql stable security definer set search_path = pg_catalog, app as $$
  select (app.current_identity()).tenant_id
$$;

-- Gateway authentication: raw-key hash -> claims for the request, or an error code.
-- In the auth schema, which only authenticator may use. Keeps last_used_at fresh to the minute without a
-- write on every request.
create or replace function auth.authenticate(p_key_hash text) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog, app as $$
declare
  k record;
begin
  select k0.*, t.status as tenant_status, t.settings as tenant_settings
    into k
    from app.api_keys k0 join app.tenants t on t.id = k0.tenant_id
   where k0.key_hash = p_key_hash;
  if not found then
    return jsonb_build_object('error', 'invalid_api_key');
  elsif k.revoked_at is not null then
    return jsonb_build_object('error', 'api_key_revoked');
  elsif k.expires_at is not null and k.expires_at <= now() then
    return jsonb_build_object('error', 'api_key_expired');
  elsif k.tenant_status <> 'active' then
    return jsonb_build_object('error', 'tenant_suspended');
  end if;
  if k.last_used_at is null or k.last_used_at < now() - interval '1 minute' then
    update app.api_keys set last_used_at = now()
     where tenant_id = k.tenant_id and id = k.id;
  end if;
  return jsonb_build_object(
    'role', 'loopctl_' || k.role,
    'key_hash', p_key_hash,
    'tenant_id', k.tenant_id,
    'key_id', k.id,
    'agent_id', k.agent_id,
    'api_role', k.role,
    'rate_limit_per_minute',
      coalesce((k.tenant_settings ->> 'rate_limit_per_minute')::int, 300));
end
$$;

reset role;

set role loopctl_owner;

-- The current caller or a 401. Every API function starts here.
create or replace function app.require_identity() returns app.identity
language plpgsql stable as $$
declare
  v app.identity := app.current_identity();
begin
  if v.tenant_id is null or v.role = 'analyst' then
    perform app.raise_error(401, 'unauthenticated', 'a valid API key is required',
      null, 'send Authorization: Bearer lc_...');
  end if;
  return v;
end
$$;

-- The caller must hold one of p_roles (exact roles: SPEC §3 has actions that need exactly
-- 'agent' or exactly 'orchestrator', not "at least").
create or replace function app.require_role(p_ident app.identity, p_roles text[], p_action text)
returns void language plpgsql immutable as $$
begin
  if not (p_ident.role = any (p_roles)) then
    perform app.raise_error(403, 'insufficient_role',
      format('%s requires a %s key; this key is %s', p_action,
             array_to_string(p_roles, ' or '), p_ident.role),
      jsonb_build_object('required_roles', to_jsonb(p_roles), 'role', p_ident.role,
                         'action', p_action));
  end if;
end
$$;

-- Who the caller is, as the database sees it (GET /api/v1/me, and handy from psql).
create or replace function api.whoami() returns jsonb
language sql stable security definer set search_path = pg_catalog, app as $$
  select jsonb_build_object('tenant_id', (i).tenant_id, 'role', (i).role,
           'key_id', (i).key_id, 'agent_id', (i).agent_id,
           'lineage_root', (i).lineage_root)
    from (select app.current_identity() as i) s
$$;

-- Tenant settings with their defaults (SPEC §3).
create or replace function app.tenant_settings(p_tenant_id uuid) returns jsonb
language sql stable as $$
  select jsonb_build_object(
           'rate_limit_per_minute', 300,
           'auto_reset_on_reject', true,
           'custody_halt_after_violations', null,
           'default_budget_millicents', null,
           'default_budget_tokens', null,
           'budget_alert_threshold_pct', 80,
           'knowledge_auto_extract', true)
         || coalesce((select settings from app.tenants where id = p_tenant_id), '{}'::jsonb)
$$;

-- 'lc_' + 40 url-safe characters (30 random bytes in base64url).
create or replace function app.generate_raw_key() returns text
language sql volatile as $$
  select 'lc_' || translate(encode(public.gen_random_bytes(30), 'base64'), '+/', '-_')
$$;

create or replace function app.key_hash(p_raw_key text) returns text
language sql immutable strict parallel safe as $$
  select encode(sha256(convert_to(p_raw_key, 'UTF8')), 'hex')
$$;

-- Inserts a key and returns its public fields plus the raw key (shown once).
create or replace function app.mint_key(
  p_tenant_id uuid, p_name text, p_role text, p_agent_id uuid default null,
  p_expires_at timestamptz default null, p_created_by uuid default null,
  p_dispatch_id uuid default null
) returns jsonb
language plpgsql volatile as $$
declare
  v_raw text := app.generate_raw_key();
  v_row app.api_keys;
begin
  insert into app.api_keys (tenant_id, name, key_hash, key_prefix, role, agent_id, expires_at,
                            created_by_key_id, dispatch_id)
  values (p_tenant_id, p_name, app.key_hash(v_raw), left(v_raw, 8), p_role, p_agent_id,
          p_expires_at, p_created_by, p_dispatch_id)
  returning * into v_row;
  return app.key_json(v_row) || jsonb_build_object('raw_key', v_raw);
end
$$;

create or replace function app.key_json(k app.api_keys) returns jsonb
language sql immutable as $$
  select jsonb_build_object('id', k.id, 'name', k.name, 'role', k.role,
    'key_prefix', k.key_prefix, 'agent_id', k.agent_id, 'dispatch_id', k.dispatch_id,
    'expires_at', k.expires_at, 'revoked_at', k.revoked_at, 'last_used_at', k.last_used_at,
    'created_at', k.created_at)
$$;

reset role;

-- Owned by loopctl_auth (BYPASSRLS) because no tenant is current while one is born.
set role loopctl_auth;

-- Tenant creation is not an API call (SPEC §12): the signup page and the operator CLI call
-- this as the database owner. Tenant, first user key and first audit entry in one go.
create or replace function app.create_tenant(
  p_name text, p_slug text, p_email text, p_settings jsonb default '{}'::jsonb
) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
declare
  v_tenant app.tenants;
  v_key jsonb;
begin
  if exists (select 1 from app.tenants where slug = p_slug) then
    perform app.raise_error(409, 'slug_taken', format('tenant slug %L is taken', p_slug),
                            jsonb_build_object('slug', p_slug));
  end if;
  insert into app.tenants (name, slug, email, settings)
  values (p_name, p_slug, p_email, coalesce(p_settings, '{}'::jsonb))
  returning * into v_tenant;
  -- The audit trigger on app.tenants writes the tenant's first audit entry.
  v_key := app.mint_key(v_tenant.id, 'owner', 'user');
  return jsonb_build_object('tenant', to_jsonb(v_tenant), 'api_key', v_key);
end
$$;

reset role;
