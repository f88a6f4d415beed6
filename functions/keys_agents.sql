-- Tenant, API keys, agents, dispatch lineage and analyst roles (SPEC §3).
set role loopctl_owner;

-- ---------------------------------------------------------------------------------------
-- Tenant
-- ---------------------------------------------------------------------------------------
create or replace function app.tenant_json(t app.tenants) returns jsonb
language sql stable as $$
  select jsonb_build_object('id', t.id, 'name', t.name, 'slug', t.slug, 'email', t.email,
    'status', t.status, 'settings', app.tenant_settings(t.id), 'created_at', t.created_at)
$$;

create or replace function api.get_tenant() returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
  v_t app.tenants;
begin
  select * into v_t from app.tenants where id = v_me.tenant_id;
  return app.tenant_json(v_t);
end
$$;

-- Settings a tenant admin may change, with their types and bounds; anything else is a 422.
create or replace function app.validate_tenant_settings(p jsonb) returns void
language plpgsql immutable as $$
declare
  k text;
  v jsonb;
  v_bad jsonb := '[]'::jsonb;
  v_ok boolean;
begin
  if p is null or jsonb_typeof(p) <> 'object' then
    perform app.raise_error(422, 'invalid_settings', 'settings must be a JSON object');
  end if;
  for k, v in select * from jsonb_each(p) loop
    v_ok := case k
      when 'rate_limit_per_minute' then
        jsonb_typeof(v) = 'number' and v::numeric between 1 and 100000 and v::numeric = trunc(v::numeric)
      when 'auto_reset_on_reject' then jsonb_typeof(v) = 'boolean'
      when 'knowledge_auto_extract' then jsonb_typeof(v) = 'boolean'
      when 'custody_halt_after_violations' then
        jsonb_typeof(v) = 'null' or (jsonb_typeof(v) = 'number' and v::numeric between 1 and 100000)
      when 'default_budget_millicents' then
        jsonb_typeof(v) = 'null' or (jsonb_typeof(v) = 'number' and v::numeric >= 0)
      when 'default_budget_tokens' then
        jsonb_typeof(v) = 'null' or (jsonb_typeof(v) = 'number' and v::numeric >= 0)
      when 'budget_alert_threshold_pct' then
        jsonb_typeof(v) = 'number' and v::numeric between 1 and 100
      else false
    end;
    if not v_ok then
      v_bad := v_bad || jsonb_build_object('setting', k, 'value', v);
    end if;
  end loop;
  if jsonb_array_length(v_bad) > 0 then
    perform app.raise_error(422, 'invalid_settings', 'unknown setting or invalid value',
      jsonb_build_object('invalid', v_bad),
      'known: rate_limit_per_minute, auto_reset_on_reject, knowledge_auto_extract, '
      'custody_halt_after_violations, default_budget_millicents, default_budget_tokens, '
      'budget_alert_threshold_pct');
  end if;
end
$$;

create or replace function api.update_tenant_settings(settings jsonb) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
  v_t app.tenants;
begin
  perform app.require_role(v_me, array['user'], 'update tenant settings');
  perform app.validate_tenant_settings(settings);
  update app.tenants set settings = app.tenants.settings || update_tenant_settings.settings,
         updated_at = now()
   where id = v_me.tenant_id
  returning * into v_t;
  return app.tenant_json(v_t);
end
$$;

-- ---------------------------------------------------------------------------------------
-- API keys: only user keys create, list, revoke and rotate them. Role is immutable.
-- ---------------------------------------------------------------------------------------
create or replace function app.find_agent(p_tenant_id uuid, p_agent_id uuid) returns app.agents
language plpgsql stable as $$
declare
  v app.agents;
begin
  select * into v from app.agents where tenant_id = p_tenant_id and id = p_agent_id;
  if not found then
    perform app.raise_error(404, 'agent_not_found', 'no such agent',
                            jsonb_build_object('agent_id', p_agent_id));
  end if;
  return v;
end
$$;

create or replace function api.create_api_key(
  name text, role text, agent_id uuid default null, expires_at timestamptz default null
) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  perform app.require_role(v_me, array['user'], 'create an API key');
  if name is null or length(trim(name)) = 0 or length(name) > 200 then
    perform app.raise_error(422, 'invalid_name', 'name is required (1-200 characters)');
  end if;
  if role is null or role not in ('user', 'orchestrator', 'agent') then
    perform app.raise_error(422, 'invalid_role', 'role must be user, orchestrator or agent',
                            jsonb_build_object('role', role));
  end if;
  if expires_at is not null and expires_at <= now() then
    perform app.raise_error(422, 'invalid_expiry', 'expires_at must be in the future');
  end if;
  if agent_id is not null then
    perform app.find_agent(v_me.tenant_id, agent_id);
    if role = 'user' then
      perform app.raise_error(422, 'invalid_role', 'user keys are not bound to agents');
    end if;
  end if;
  return app.mint_key(v_me.tenant_id, name, role, agent_id, expires_at, v_me.key_id);
end
$$;

create or replace function api.list_api_keys() returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  perform app.require_role(v_me, array['user'], 'list API keys');
  return coalesce((select jsonb_agg(app.key_json(k) order by k.created_at, k.id)
                     from app.api_keys k where k.tenant_id = v_me.tenant_id), '[]'::jsonb);
end
$$;

create or replace function app.find_key_for_update(p_tenant_id uuid, p_key_id uuid)
returns app.api_keys
language plpgsql volatile as $$
declare
  v app.api_keys;
begin
  select * into v from app.api_keys where tenant_id = p_tenant_id and id = p_key_id
    for update;
  if not found then
    perform app.raise_error(404, 'api_key_not_found', 'no such API key',
                            jsonb_build_object('key_id', p_key_id));
  end if;
  return v;
end
$$;

create or replace function api.revoke_api_key(key_id uuid) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
  v app.api_keys;
begin
  perform app.require_role(v_me, array['user'], 'revoke an API key');
  v := app.find_key_for_update(v_me.tenant_id, key_id);
  if v.revoked_at is null then
    update app.api_keys set revoked_at = now()
     where tenant_id = v.tenant_id and id = v.id returning * into v;
  end if;
  return app.key_json(v);
end
$$;

-- A new secret for the same name, role, agent and expiry; the old key is revoked.
create or replace function api.rotate_api_key(key_id uuid) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
  v app.api_keys;
begin
  perform app.require_role(v_me, array['user'], 'rotate an API key');
  v := app.find_key_for_update(v_me.tenant_id, key_id);
  if v.revoked_at is not null then
    perform app.raise_error(409, 'api_key_revoked', 'a revoked key cannot be rotated');
  end if;
  update app.api_keys set revoked_at = now() where tenant_id = v.tenant_id and id = v.id;
  return app.mint_key(v.tenant_id, v.name, v.role, v.agent_id, v.expires_at, v_me.key_id,
                      v.dispatch_id)
         || jsonb_build_object('rotated_from', v.id);
end
$$;

-- ---------------------------------------------------------------------------------------
-- Agents: POST /agents/register binds the calling key to a new agent, once.
-- ---------------------------------------------------------------------------------------
create or replace function app.agent_json(a app.agents) returns jsonb
language sql immutable as $$
  select jsonb_build_object('id', a.id, 'name', a.name, 'agent_type', a.agent_type,
    'lineage', to_jsonb(a.lineage), 'lineage_root', a.lineage[1],
    'parent_agent_id', a.parent_agent_id, 'created_at', a.created_at)
$$;

create or replace function app.insert_agent(
  p_tenant_id uuid, p_name text, p_agent_type text, p_parent app.agents default null
) returns app.agents
language plpgsql volatile as $$
declare
  v_id uuid := gen_random_uuid();
  v app.agents;
begin
  if p_name is null or length(trim(p_name)) = 0 or length(p_name) > 200 then
    perform app.raise_error(422, 'invalid_name', 'agent name is required (1-200 characters)');
  end if;
  if p_agent_type is null or p_agent_type not in ('orchestrator', 'implementer') then
    perform app.raise_error(422, 'invalid_agent_type',
                            'agent_type must be orchestrator or implementer');
  end if;
  if exists (select 1 from app.agents where tenant_id = p_tenant_id and name = p_name) then
    perform app.raise_error(409, 'agent_name_taken', format('agent %L exists', p_name),
                            jsonb_build_object('name', p_name));
  end if;
  insert into app.agents (tenant_id, id, name, agent_type, lineage, parent_agent_id)
  values (p_tenant_id, v_id, p_name, p_agent_type,
          coalesce(p_parent.lineage, '{}'::uuid[]) || v_id, p_parent.id)
  returning * into v;
  return v;
end
$$;

create or replace function api.register_agent(name text, agent_type text default null)
returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
  v_agent app.agents;
begin
  perform app.require_role(v_me, array['agent', 'orchestrator'], 'register an agent');
  -- Lock the key row: two concurrent registrations with one key bind it once.
  perform 1 from app.api_keys where tenant_id = v_me.tenant_id and id = v_me.key_id for update;
  if exists (select 1 from app.api_keys where tenant_id = v_me.tenant_id and id = v_me.key_id
               and agent_id is not null) then
    -- Re-binding would let a key shed the identity the gates compare against.
    perform app.raise_error(409, 'key_already_bound',
      'this key is already bound to an agent; a key has one identity for life',
      jsonb_build_object('agent_id', v_me.agent_id));
  end if;
  v_agent := app.insert_agent(v_me.tenant_id, name,
    coalesce(agent_type, case v_me.role when 'orchestrator' then 'orchestrator'
                                        else 'implementer' end));
  update app.api_keys set agent_id = v_agent.id
   where tenant_id = v_me.tenant_id and id = v_me.key_id;
  perform app.emit_event(v_me.tenant_id, 'agent.registered',
    jsonb_build_object('agent', app.agent_json(v_agent), 'key_id', v_me.key_id),
    null, 'agent', v_agent.id);
  return app.agent_json(v_agent);
end
$$;

create or replace function api.list_agents() returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  return coalesce((select jsonb_agg(app.agent_json(a) order by a.created_at, a.id)
                     from app.agents a where a.tenant_id = v_me.tenant_id), '[]'::jsonb);
end
$$;

create or replace function api.get_agent(agent_id uuid) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  return app.agent_json(app.find_agent(v_me.tenant_id, agent_id));
end
$$;

-- ---------------------------------------------------------------------------------------
-- Dispatch: an orchestrator spawns a sub-agent with a short-lived key. The child's lineage
-- is the parent's plus itself, so it shares the parent's root: the identity gates treat
-- the two as one actor.
-- ---------------------------------------------------------------------------------------
create or replace function api.create_dispatch(
  agent_name text default null, purpose text default null, story_id uuid default null,
  ttl_seconds integer default 3600, role text default 'agent'
) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
  v_parent app.agents;
  v_child app.agents;
  v_dispatch_id uuid := gen_random_uuid();
  v_expires timestamptz;
  v_key jsonb;
begin
  perform app.require_role(v_me, array['orchestrator'], 'dispatch a sub-agent');
  if v_me.agent_id is null then
    perform app.raise_error(403, 'agent_identity_required',
      'dispatch needs a key bound to an agent (POST /api/v1/agents/register first)');
  end if;
  if ttl_seconds is null or ttl_seconds not between 60 and 14400 then
    perform app.raise_error(422, 'invalid_ttl', 'ttl_seconds must be between 60 and 14400',
                            jsonb_build_object('ttl_seconds', ttl_seconds));
  end if;
  if role is null or role not in ('agent', 'orchestrator') then
    perform app.raise_error(422, 'invalid_role', 'a dispatched key is an agent or orchestrator key');
  end if;
  if purpose is not null and length(purpose) > 2000 then
    perform app.raise_error(422, 'invalid_purpose', 'purpose is at most 2000 characters');
  end if;
  if story_id is not null
     and not exists (select 1 from app.stories s where s.tenant_id = v_me.tenant_id
                       and s.id = create_dispatch.story_id) then
    perform app.raise_error(404, 'story_not_found', 'no such story',
                            jsonb_build_object('story_id', story_id));
  end if;
  v_parent := app.find_agent(v_me.tenant_id, v_me.agent_id);
  v_expires := now() + make_interval(secs => ttl_seconds);
  v_child := app.insert_agent(v_me.tenant_id,
    coalesce(agent_name, v_parent.name || '/dispatch-' || left(v_dispatch_id::text, 8)),
    case role when 'orchestrator' then 'orchestrator' else 'implementer' end, v_parent);
  v_key := app.mint_key(v_me.tenant_id, 'dispatch ' || v_child.name, role, v_child.id,
                        v_expires, v_me.key_id);
  insert into app.dispatches (tenant_id, id, parent_agent_id, child_agent_id, key_id, purpose,
                              story_id, expires_at)
  values (v_me.tenant_id, v_dispatch_id, v_parent.id, v_child.id, (v_key ->> 'id')::uuid,
          purpose, story_id, v_expires);
  update app.api_keys set dispatch_id = v_dispatch_id
   where tenant_id = v_me.tenant_id and id = (v_key ->> 'id')::uuid;
  return jsonb_build_object(
    'dispatch', jsonb_build_object('id', v_dispatch_id, 'parent_agent_id', v_parent.id,
       'purpose', purpose, 'story_id', story_id, 'expires_at', v_expires),
    'agent', app.agent_json(v_child),
    'api_key', v_key || jsonb_build_object('dispatch_id', v_dispatch_id));
end
$$;

create or replace function api.list_dispatches() returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  perform app.require_role(v_me, array['user', 'orchestrator'], 'list dispatches');
  return coalesce((select jsonb_agg(jsonb_build_object('id', d.id,
      'parent_agent_id', d.parent_agent_id, 'child_agent_id', d.child_agent_id,
      'key_id', d.key_id, 'purpose', d.purpose, 'story_id', d.story_id,
      'expires_at', d.expires_at, 'created_at', d.created_at) order by d.created_at, d.id)
    from app.dispatches d where d.tenant_id = v_me.tenant_id), '[]'::jsonb);
end
$$;

-- ---------------------------------------------------------------------------------------
-- Views for PostgREST-style reads (security_invoker: RLS of the caller applies).
-- ---------------------------------------------------------------------------------------
create or replace view api.agents with (security_invoker = true) as
  select id, name, agent_type, lineage, lineage[1] as lineage_root, parent_agent_id, created_at
    from app.agents;

create or replace view api.api_keys with (security_invoker = true) as
  select id, name, role, key_prefix, agent_id, dispatch_id, expires_at, revoked_at,
         last_used_at, created_at
    from app.api_keys;

reset role;

-- ---------------------------------------------------------------------------------------
-- Analysts: a per-tenant LOGIN role, member of loopctl_analyst. Creating roles needs
-- CREATEROLE, so this runs as the installation operator (superuser CLI), never via the API.
-- ---------------------------------------------------------------------------------------
create or replace function app.create_analyst_role(
  p_tenant_slug text, p_role_name text, p_password text
) returns jsonb
language plpgsql volatile as $$
declare
  v_tenant_id uuid;
begin
  select id into v_tenant_id from app.tenants where slug = p_tenant_slug;
  if not found then
    perform app.raise_error(404, 'tenant_not_found', 'no such tenant');
  end if;
  if p_role_name !~ '^[a-z][a-z0-9_]{2,62}$' or p_role_name like 'loopctl%'
     or p_role_name in ('authenticator', 'postgres') then
    perform app.raise_error(422, 'invalid_role_name',
      'analyst role names are lower-case identifiers not starting with loopctl');
  end if;
  if p_password is null or length(p_password) < 12 then
    perform app.raise_error(422, 'weak_password', 'analyst passwords have at least 12 characters');
  end if;
  execute format('create role %I login inherit password %L in role loopctl_analyst',
                 p_role_name, p_password);
  insert into app.analyst_roles (tenant_id, role_name) values (v_tenant_id, p_role_name);
  return jsonb_build_object('role', p_role_name, 'tenant_id', v_tenant_id);
end
$$;
