-- Passkey signup and sign-in (SPEC §12, issue #9). The service verifies the WebAuthn
-- signatures (py_webauthn); every business rule lives here: challenges are single-use and
-- expire, sign counts never go backwards, a tenant has 1 to 5 authenticators, slugs are
-- unique, attempts are rate-limited per client address, sessions are short.
--
-- The entry points are in the `auth` schema (usable by `authenticator` only, never by an API
-- role): no API call can create a tenant. They are owned by loopctl_auth (BYPASSRLS) because
-- a tenant is not the current tenant while it is being born or signing in; each therefore
-- filters by tenant explicitly.

set role loopctl_auth;

create or replace function app.b64url(p bytea) returns text
language sql immutable strict parallel safe as $$
  select rtrim(translate(encode(p, 'base64'), E'+/\n', '-_'), '=')
$$;

-- Raise a PGRST error with response headers (app.raise_error sends none).
create or replace function app.signup_error(
  p_status integer, p_code text, p_message text, p_details jsonb default null,
  p_headers jsonb default '{}'::jsonb
) returns void language plpgsql immutable as $$
begin
  raise sqlstate 'PGRST' using
    message = jsonb_build_object('code', p_code, 'message', p_message,
                                 'details', p_details, 'hint', null)::text,
    detail  = jsonb_build_object('status', p_status, 'headers', p_headers)::text;
end
$$;

-- Attempts per client address in fixed 10-minute windows: 20 signups, 60 sign-ins.
create or replace function app.signup_rate_check(p_client_addr text, p_action text)
returns void language plpgsql volatile set search_path = pg_catalog, app as $$
declare
  v_window   timestamptz := date_bin('10 minutes', now(), timestamptz '2000-01-01 00:00Z');
  v_limit    integer := case p_action when 'signup' then 20 else 60 end;
  v_attempts integer;
begin
  insert into app.signup_attempts (client_addr, action, window_start, attempts)
  values (coalesce(nullif(left(p_client_addr, 100), ''), 'unknown'), p_action, v_window, 1)
  on conflict (client_addr, action, window_start)
    do update set attempts = app.signup_attempts.attempts + 1
  returning attempts into v_attempts;
  if v_attempts > v_limit then
    perform app.signup_error(429, 'rate_limited',
      format('too many %s attempts from this address; try again later', p_action),
      jsonb_build_object('limit', v_limit, 'window_seconds', 600),
      jsonb_build_object('Retry-After',
        ceil(extract(epoch from v_window + interval '10 minutes' - now()))::int::text));
  end if;
  if v_attempts = 1 then  -- first attempt of a window: forget old windows
    delete from app.signup_attempts where window_start < now() - interval '1 day';
  end if;
end
$$;

-- Lock and consume a challenge: it must exist for this purpose (and tenant), be unused and
-- unexpired. Marks it used; the caller's transaction creates what the ceremony yields.
create or replace function app.take_challenge(p_challenge bytea, p_purpose text,
                                              p_tenant_id uuid default null)
returns app.webauthn_challenges
language plpgsql volatile set search_path = pg_catalog, app as $$
declare
  c app.webauthn_challenges;
begin
  select * into c from app.webauthn_challenges
   where challenge = p_challenge and purpose = p_purpose
     and tenant_id is not distinct from p_tenant_id
   for update;
  if not found then
    perform app.signup_error(400, 'challenge_unknown',
      'this ceremony was not started here; start again');
  elsif c.used_at is not null then
    perform app.signup_error(409, 'challenge_used',
      'this challenge was already used; start again');
  elsif c.expires_at <= now() then
    perform app.signup_error(409, 'challenge_expired',
      'the ceremony took too long; start again');
  end if;
  update app.webauthn_challenges set used_at = now() where challenge = p_challenge;
  return c;
end
$$;

create or replace function app.new_challenge(p_purpose text, p_client_addr text,
                                             p_tenant_id uuid default null,
                                             p_pending jsonb default null)
returns bytea language plpgsql volatile set search_path = pg_catalog, app as $$
declare
  v_challenge bytea := public.gen_random_bytes(32);
begin
  delete from app.webauthn_challenges where expires_at < now() - interval '1 hour';
  insert into app.webauthn_challenges (tenant_id, challenge, purpose, pending_tenant,
                                       client_addr, expires_at)
  values (p_tenant_id, v_challenge, p_purpose, p_pending, left(p_client_addr, 100),
          now() + interval '5 minutes');
  return v_challenge;
end
$$;

create or replace function app.new_browser_session(p_tenant_id uuid, p_credential_ref uuid,
                                                   p_client_addr text)
returns jsonb language plpgsql volatile set search_path = pg_catalog, app as $$
declare
  v_token   text := 'lcs_' || app.b64url(public.gen_random_bytes(32));
  v_expires timestamptz := now() + interval '30 minutes';
begin
  insert into app.browser_sessions (tenant_id, token_hash, credential_ref, client_addr,
                                    expires_at)
  values (p_tenant_id, app.key_hash(v_token), p_credential_ref, left(p_client_addr, 100),
          v_expires);
  return jsonb_build_object('token', v_token, 'expires_at', v_expires, 'max_age', 1800);
end
$$;

-- The tenant of a live browser session, or a 401.
create or replace function app.session_tenant(p_session text) returns uuid
language plpgsql stable set search_path = pg_catalog, app as $$
declare
  v_tenant uuid;
begin
  select s.tenant_id into v_tenant
    from app.browser_sessions s join app.tenants t on t.id = s.tenant_id
   where s.token_hash = app.key_hash(coalesce(p_session, ''))
     and s.revoked_at is null and s.expires_at > now() and t.status = 'active';
  if v_tenant is null then
    perform app.signup_error(401, 'session_required',
      'sign in with your passkey first (sessions last 30 minutes)');
  end if;
  return v_tenant;
end
$$;

create or replace function app.credential_json(c app.webauthn_credentials) returns jsonb
language sql immutable as $$
  select jsonb_build_object('id', c.id, 'name', c.name, 'transports', to_jsonb(c.transports),
    'aaguid', c.aaguid, 'sign_count', c.sign_count, 'created_at', c.created_at,
    'last_used_at', c.last_used_at)
$$;

reset role;

-- At most 5 authenticators per tenant, whoever inserts. A per-tenant advisory lock
-- serialises concurrent registrations (and removals) of one tenant.
set role loopctl_owner;

create or replace function app.webauthn_credentials_limit() returns trigger
language plpgsql set search_path = pg_catalog, app as $$
begin
  perform pg_advisory_xact_lock(hashtextextended('webauthn:' || new.tenant_id::text, 0));
  if (select count(*) from app.webauthn_credentials where tenant_id = new.tenant_id) >= 5 then
    perform app.signup_error(409, 'too_many_authenticators',
      'a tenant has at most 5 authenticators; remove one first');
  end if;
  return new;
end
$$;

drop trigger if exists webauthn_credentials_limit on app.webauthn_credentials;
create trigger webauthn_credentials_limit before insert on app.webauthn_credentials
  for each row execute function app.webauthn_credentials_limit();

reset role;
set role loopctl_auth;

-- ---------------------------------------------------------------------------------------
-- Signup: begin (validate, rate-limit, issue a challenge) and finish (create everything).

create or replace function auth.signup_begin(p_name text, p_slug text, p_email text,
                                             p_client_addr text)
returns jsonb language plpgsql volatile security definer
set search_path = pg_catalog, app as $$
declare
  v_name   text := btrim(coalesce(p_name, ''));
  v_slug   text := btrim(coalesce(p_slug, ''));
  v_email  text := btrim(coalesce(p_email, ''));
  v_handle bytea := public.gen_random_bytes(16);
  v_challenge bytea;
begin
  perform app.signup_rate_check(p_client_addr, 'signup');
  if length(v_name) not between 1 and 200 then
    perform app.raise_error(422, 'invalid_name', 'name must be 1 to 200 characters',
                            jsonb_build_object('field', 'name'));
  elsif v_slug !~ '^[a-z0-9][a-z0-9-]{1,62}$' then
    perform app.raise_error(422, 'invalid_slug',
      'slug must be 2 to 63 lowercase letters, digits or dashes, not starting with a dash',
      jsonb_build_object('field', 'slug'));
  elsif v_email !~ '^[^@\s]+@[^@\s]+$' or length(v_email) > 320 then
    perform app.raise_error(422, 'invalid_email', 'email must look like name@domain',
                            jsonb_build_object('field', 'email'));
  elsif exists (select 1 from app.tenants where slug = v_slug) then
    perform app.raise_error(409, 'slug_taken', format('tenant slug %L is taken', v_slug),
                            jsonb_build_object('slug', v_slug, 'field', 'slug'));
  end if;
  v_challenge := app.new_challenge('signup', p_client_addr, null,
    jsonb_build_object('name', v_name, 'slug', v_slug, 'email', v_email,
                       'user_handle', encode(v_handle, 'hex')));
  return jsonb_build_object('challenge', app.b64url(v_challenge),
    'user_handle', app.b64url(v_handle), 'user_name', v_slug, 'display_name', v_name,
    'timeout_ms', 300000);
end
$$;

-- Called after the service verified the attestation against this challenge, origin and RP
-- ID. One transaction: tenant, first user key, first audit entry (trigger on app.tenants),
-- the authenticator, and a browser session.
create or replace function auth.signup_finish(
  p_challenge bytea, p_credential_id bytea, p_public_key bytea, p_sign_count bigint,
  p_transports text[], p_aaguid uuid, p_authenticator_name text, p_client_addr text
) returns jsonb language plpgsql volatile security definer
set search_path = pg_catalog, app as $$
declare
  c        app.webauthn_challenges := app.take_challenge(p_challenge, 'signup');
  v_result jsonb;
  v_tenant uuid;
  v_cred   app.webauthn_credentials;
begin
  if exists (select 1 from app.webauthn_credentials where credential_id = p_credential_id) then
    perform app.raise_error(409, 'credential_registered',
                            'this authenticator credential is already registered');
  end if;
  v_result := app.create_tenant(c.pending_tenant ->> 'name', c.pending_tenant ->> 'slug',
                                c.pending_tenant ->> 'email');
  v_tenant := (v_result -> 'tenant' ->> 'id')::uuid;
  insert into app.webauthn_credentials (tenant_id, credential_id, public_key, user_handle,
                                        sign_count, transports, aaguid, name, last_used_at)
  values (v_tenant, p_credential_id, p_public_key,
          decode(c.pending_tenant ->> 'user_handle', 'hex'), coalesce(p_sign_count, 0),
          coalesce(p_transports, '{}'), p_aaguid,
          coalesce(nullif(btrim(left(p_authenticator_name, 100)), ''), 'first passkey'),
          now())
  returning * into v_cred;
  return jsonb_build_object(
    'tenant', jsonb_build_object('id', v_tenant, 'name', v_result -> 'tenant' -> 'name',
                                 'slug', v_result -> 'tenant' -> 'slug'),
    'api_key', v_result -> 'api_key',
    'authenticator', app.credential_json(v_cred),
    'session', app.new_browser_session(v_tenant, v_cred.id, p_client_addr));
end
$$;

-- A failed verification burns its challenge (separately: the failure rolls back the call
-- that would have consumed it).
create or replace function auth.burn_challenge(p_challenge bytea) returns void
language sql volatile security definer set search_path = pg_catalog, app as $$
  update app.webauthn_challenges set used_at = now()
   where challenge = p_challenge and used_at is null
$$;

-- ---------------------------------------------------------------------------------------
-- Sign-in.

-- p_slug optional: with it, the browser is told which credentials to offer; without it the
-- authenticator offers its discoverable credentials. An unknown slug looks like a known one
-- with no credentials offered (slugs are not enumerable this way).
create or replace function auth.signin_begin(p_slug text, p_client_addr text)
returns jsonb language plpgsql volatile security definer
set search_path = pg_catalog, app as $$
declare
  v_challenge bytea;
  v_allow jsonb := '[]'::jsonb;
begin
  perform app.signup_rate_check(p_client_addr, 'signin');
  if nullif(btrim(p_slug), '') is not null then
    select coalesce(jsonb_agg(jsonb_build_object('id', app.b64url(w.credential_id),
                                                 'transports', to_jsonb(w.transports))
                              order by w.created_at), '[]')
      into v_allow
      from app.webauthn_credentials w join app.tenants t on t.id = w.tenant_id
     where t.slug = btrim(p_slug) and t.status = 'active';
  end if;
  v_challenge := app.new_challenge('signin', p_client_addr);
  return jsonb_build_object('challenge', app.b64url(v_challenge),
                            'allow_credentials', v_allow, 'timeout_ms', 300000);
end
$$;

-- What the service needs to check an assertion's signature. 404 for an unknown credential
-- (or one of a suspended tenant).
create or replace function auth.signin_credential(p_credential_id bytea)
returns jsonb language plpgsql stable security definer
set search_path = pg_catalog, app as $$
declare
  w app.webauthn_credentials;
begin
  select w0.* into w from app.webauthn_credentials w0 join app.tenants t on t.id = w0.tenant_id
   where w0.credential_id = p_credential_id and t.status = 'active';
  if not found then
    perform app.raise_error(404, 'unknown_credential',
      'this passkey is not registered here', null, 'sign up first, or use another passkey');
  end if;
  return jsonb_build_object('public_key', encode(w.public_key, 'hex'),
                            'sign_count', w.sign_count, 'user_handle', app.b64url(w.user_handle));
end
$$;

-- After the service verified the assertion's signature: consume the challenge, refuse a
-- sign count that does not move forward (a cloned authenticator), open a session.
create or replace function auth.signin_finish(p_challenge bytea, p_credential_id bytea,
                                              p_new_sign_count bigint, p_client_addr text)
returns jsonb language plpgsql volatile security definer
set search_path = pg_catalog, app as $$
declare
  c app.webauthn_challenges := app.take_challenge(p_challenge, 'signin');
  w app.webauthn_credentials;
  t app.tenants;
begin
  select w0.* into w from app.webauthn_credentials w0
   where w0.credential_id = p_credential_id for update;
  select t0.* into t from app.tenants t0 where t0.id = w.tenant_id and t0.status = 'active';
  if w.id is null or t.id is null then
    perform app.raise_error(404, 'unknown_credential', 'this passkey is not registered here');
  end if;
  -- WebAuthn §6.1.1: both zero means the authenticator keeps no counter.
  if (p_new_sign_count > 0 or w.sign_count > 0) and p_new_sign_count <= w.sign_count then
    perform app.raise_error(409, 'sign_count_regression',
      'the authenticator''s signature counter went backwards: it may have been cloned',
      jsonb_build_object('stored', w.sign_count, 'presented', p_new_sign_count),
      'use another registered authenticator, and remove this one');
  end if;
  update app.webauthn_credentials set sign_count = p_new_sign_count, last_used_at = now()
   where tenant_id = w.tenant_id and id = w.id;
  return jsonb_build_object(
    'tenant', jsonb_build_object('id', t.id, 'name', t.name, 'slug', t.slug),
    'session', app.new_browser_session(t.id, w.id, p_client_addr));
end
$$;

-- ---------------------------------------------------------------------------------------
-- Signed in (browser session): the tenant, its authenticators and keys.

create or replace function auth.session_info(p_session text) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
declare
  v_tenant uuid := app.session_tenant(p_session);
begin
  return (select jsonb_build_object(
      'tenant', jsonb_build_object('id', t.id, 'name', t.name, 'slug', t.slug,
                                   'email', t.email),
      'session_expires_at', (select expires_at from app.browser_sessions
                              where token_hash = app.key_hash(p_session)),
      'authenticators', coalesce((select jsonb_agg(app.credential_json(w) order by w.created_at)
                                    from app.webauthn_credentials w
                                   where w.tenant_id = t.id), '[]'))
    from app.tenants t where t.id = v_tenant);
end
$$;

create or replace function auth.session_signout(p_session text) returns void
language sql volatile security definer set search_path = pg_catalog, app as $$
  update app.browser_sessions set revoked_at = now()
   where token_hash = app.key_hash(coalesce(p_session, '')) and revoked_at is null
$$;

create or replace function auth.session_list_keys(p_session text) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
declare
  v_tenant uuid := app.session_tenant(p_session);
begin
  return coalesce((
    select jsonb_agg(app.key_json(k) || jsonb_build_object('agent_name', a.name)
                     order by k.created_at desc)
      from app.api_keys k
      left join app.agents a on a.tenant_id = k.tenant_id and a.id = k.agent_id
     where k.tenant_id = v_tenant), '[]');
end
$$;

-- Mint a key for the session's tenant; with an agent name the key is bound to that agent
-- (created if new: orchestrator keys get an orchestrator agent, others an implementer).
create or replace function auth.session_create_key(p_session text, p_name text, p_role text,
                                                   p_agent_name text default null,
                                                   p_expires_at timestamptz default null)
returns jsonb language plpgsql volatile security definer
set search_path = pg_catalog, app as $$
declare
  v_tenant uuid := app.session_tenant(p_session);
  v_name   text := btrim(coalesce(p_name, ''));
  v_agent_name text := nullif(btrim(coalesce(p_agent_name, '')), '');
  v_agent  uuid;
begin
  if length(v_name) not between 1 and 200 then
    perform app.raise_error(422, 'invalid_name', 'key name must be 1 to 200 characters',
                            jsonb_build_object('field', 'name'));
  elsif p_role is null or p_role not in ('user', 'orchestrator', 'agent') then
    perform app.raise_error(422, 'invalid_role', 'role must be user, orchestrator or agent',
                            jsonb_build_object('field', 'role'));
  elsif p_expires_at is not null and p_expires_at <= now() then
    perform app.raise_error(422, 'invalid_expiry', 'expiry must be in the future',
                            jsonb_build_object('field', 'expires_at'));
  elsif v_agent_name is not null and p_role = 'user' then
    perform app.raise_error(422, 'invalid_role', 'user keys are not bound to agents',
                            jsonb_build_object('field', 'agent_name'));
  elsif length(v_agent_name) > 200 then
    perform app.raise_error(422, 'invalid_agent', 'agent name must be at most 200 characters',
                            jsonb_build_object('field', 'agent_name'));
  end if;
  if v_agent_name is not null then
    select id into v_agent from app.agents where tenant_id = v_tenant and name = v_agent_name;
    if v_agent is null then
      v_agent := gen_random_uuid();
      insert into app.agents (tenant_id, id, name, agent_type, lineage)
      values (v_tenant, v_agent, v_agent_name,
              case p_role when 'orchestrator' then 'orchestrator' else 'implementer' end,
              array[v_agent]);
    end if;
  end if;
  return app.mint_key(v_tenant, v_name, p_role, v_agent, p_expires_at);
end
$$;

create or replace function app.session_key(p_tenant uuid, p_key_id uuid) returns app.api_keys
language plpgsql volatile set search_path = pg_catalog, app as $$
declare
  k app.api_keys;
begin
  select * into k from app.api_keys where tenant_id = p_tenant and id = p_key_id for update;
  if not found then
    perform app.raise_error(404, 'key_not_found', 'no such key in this tenant');
  elsif k.revoked_at is not null then
    perform app.raise_error(409, 'key_revoked', 'this key is already revoked');
  end if;
  return k;
end
$$;

create or replace function auth.session_revoke_key(p_session text, p_key_id uuid)
returns jsonb language plpgsql volatile security definer
set search_path = pg_catalog, app as $$
declare
  k app.api_keys := app.session_key(app.session_tenant(p_session), p_key_id);
begin
  update app.api_keys set revoked_at = now() where tenant_id = k.tenant_id and id = k.id
  returning * into k;
  return app.key_json(k);
end
$$;

-- A new key with the same name, role, agent and expiry; the old one is revoked at once.
create or replace function auth.session_rotate_key(p_session text, p_key_id uuid)
returns jsonb language plpgsql volatile security definer
set search_path = pg_catalog, app as $$
declare
  k app.api_keys := app.session_key(app.session_tenant(p_session), p_key_id);
begin
  update app.api_keys set revoked_at = now() where tenant_id = k.tenant_id and id = k.id;
  return app.mint_key(k.tenant_id, k.name, k.role, k.agent_id, k.expires_at, null,
                      k.dispatch_id)
         || jsonb_build_object('rotated_from', k.id);
end
$$;

-- Another authenticator for the signed-in tenant (at most 5).
create or replace function auth.add_authenticator_begin(p_session text, p_client_addr text)
returns jsonb language plpgsql volatile security definer
set search_path = pg_catalog, app as $$
declare
  v_tenant uuid := app.session_tenant(p_session);
  t app.tenants;
  v_challenge bytea;
begin
  select * into t from app.tenants where id = v_tenant;
  if (select count(*) from app.webauthn_credentials where tenant_id = v_tenant) >= 5 then
    perform app.signup_error(409, 'too_many_authenticators',
      'a tenant has at most 5 authenticators; remove one first');
  end if;
  v_challenge := app.new_challenge('add_authenticator', p_client_addr, v_tenant);
  return jsonb_build_object('challenge', app.b64url(v_challenge),
    'user_handle', (select app.b64url(user_handle) from app.webauthn_credentials
                     where tenant_id = v_tenant order by created_at limit 1),
    'user_name', t.slug, 'display_name', t.name, 'timeout_ms', 300000,
    'exclude_credentials', (select coalesce(jsonb_agg(app.b64url(credential_id)), '[]')
                              from app.webauthn_credentials where tenant_id = v_tenant));
end
$$;

create or replace function auth.add_authenticator_finish(
  p_session text, p_challenge bytea, p_credential_id bytea, p_public_key bytea,
  p_sign_count bigint, p_transports text[], p_aaguid uuid, p_name text
) returns jsonb language plpgsql volatile security definer
set search_path = pg_catalog, app as $$
declare
  v_tenant uuid := app.session_tenant(p_session);
  c app.webauthn_challenges := app.take_challenge(p_challenge, 'add_authenticator', v_tenant);
  w app.webauthn_credentials;
begin
  if exists (select 1 from app.webauthn_credentials where credential_id = p_credential_id) then
    perform app.raise_error(409, 'credential_registered',
                            'this authenticator credential is already registered');
  end if;
  insert into app.webauthn_credentials (tenant_id, credential_id, public_key, user_handle,
                                        sign_count, transports, aaguid, name)
  values (v_tenant, p_credential_id, p_public_key,
          (select user_handle from app.webauthn_credentials
            where tenant_id = v_tenant order by created_at limit 1),
          coalesce(p_sign_count, 0), coalesce(p_transports, '{}'), p_aaguid,
          coalesce(nullif(btrim(left(p_name, 100)), ''), 'passkey'))
  returning * into w;
  return app.credential_json(w);
end
$$;

-- The last authenticator cannot be removed (a tenant always keeps one).
create or replace function auth.remove_authenticator(p_session text, p_id uuid)
returns void language plpgsql volatile security definer
set search_path = pg_catalog, app as $$
declare
  v_tenant uuid := app.session_tenant(p_session);
begin
  perform pg_advisory_xact_lock(hashtextextended('webauthn:' || v_tenant::text, 0));
  if not exists (select 1 from app.webauthn_credentials where tenant_id = v_tenant and id = p_id)
  then
    perform app.raise_error(404, 'authenticator_not_found', 'no such authenticator here');
  elsif (select count(*) from app.webauthn_credentials where tenant_id = v_tenant) <= 1 then
    perform app.raise_error(409, 'last_authenticator',
      'a tenant keeps at least one authenticator; add another before removing this one');
  end if;
  delete from app.webauthn_credentials where tenant_id = v_tenant and id = p_id;
end
$$;

reset role;
