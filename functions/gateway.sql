-- Gateway support in SQL (issue #4): authentication with a rate limit shared by every
-- gateway process, and the per-request settings PostgREST would set.
--
-- One request is one simple-query string sent by the gateway as `authenticator`:
--   select auth.authenticate_request(<key hash>);  commit;       -- counts, commits at once
--   begin; select set_config('role', auth.assume_request(...), true);
--   [select <db-pre-request>();]  select api.<fn>(...);  <response GUCs>;  commit;
-- Counting outside the request transaction keeps the counter's row lock for microseconds
-- (requests of one key do not queue behind each other) and counts failed requests too.

set role loopctl_auth;

-- Authenticate a key hash and count the request in the key's one-minute window.
-- Returns the claims plus {rate: {limit, remaining, reset}}, or {error, status, ...};
-- the result is also kept in the session setting loopctl.gateway_auth for
-- auth.assume_request in the same round trip.
create or replace function auth.authenticate_request(p_key_hash text) returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog, app as $$
declare
  v_claims  jsonb;
  v_limit   integer;
  v_window  timestamptz;
  v_hits    integer;
  v_reset   bigint;
begin
  if p_key_hash is null or p_key_hash !~ '^[0-9a-f]{64}$' then
    v_claims := jsonb_build_object('error', 'invalid_api_key');
  else
    v_claims := auth.authenticate(p_key_hash);
  end if;
  if v_claims ? 'error' then
    v_claims := v_claims || jsonb_build_object('status', 401);
  else
    v_limit := greatest(coalesce((v_claims ->> 'rate_limit_per_minute')::integer, 300), 1);
    insert into app.rate_limits as r (tenant_id, key_id, window_start, hits)
    values ((v_claims ->> 'tenant_id')::uuid, (v_claims ->> 'key_id')::uuid, now(), 1)
    on conflict (tenant_id, key_id) do update
      set window_start = case when r.window_start <= now() - interval '1 minute'
                              then now() else r.window_start end,
          hits = case when r.window_start <= now() - interval '1 minute'
                      then 1 else r.hits + 1 end
    returning r.window_start, r.hits into v_window, v_hits;
    v_reset := ceil(extract(epoch from v_window + interval '1 minute'))::bigint;
    v_claims := v_claims || jsonb_build_object('rate', jsonb_build_object(
      'limit', v_limit, 'remaining', greatest(v_limit - v_hits, 0), 'reset', v_reset));
    if v_hits > v_limit then
      v_claims := jsonb_build_object(
        'error', 'rate_limited', 'status', 429, 'rate', v_claims -> 'rate',
        'retry_after', greatest(v_reset - floor(extract(epoch from now()))::bigint, 1));
    end if;
  end if;
  perform set_config('loopctl.gateway_auth', v_claims::text, false);
  return v_claims;
end
$$;

-- Set the request settings as PostgREST does (transaction-local) and return the role the
-- request must run as; the caller applies it with set_config('role', ..., true) (a
-- function cannot switch roles itself). Refuses with the authentication error kept by
-- auth.authenticate_request unless the request is anonymous.
create or replace function auth.assume_request(
  p_anonymous boolean, p_anon_role text, p_headers text, p_method text, p_path text
) returns text
language plpgsql volatile
set search_path = pg_catalog as $$
declare
  v_auth jsonb;
  v_claims jsonb;
  v_headers jsonb;
begin
  if p_anonymous then
    v_claims := jsonb_build_object('role', p_anon_role);
  else
    v_auth := nullif(current_setting('loopctl.gateway_auth', true), '')::jsonb;
    if v_auth is null then
      v_auth := jsonb_build_object('error', 'invalid_api_key', 'status', 401);
    end if;
    if v_auth ? 'error' then
      v_headers := case when v_auth ? 'retry_after'
                        then jsonb_build_object('Retry-After', (v_auth ->> 'retry_after'))
                        else jsonb_build_object('WWW-Authenticate', 'Bearer') end;
      raise sqlstate 'PGRST' using
        message = jsonb_build_object(
          'code', v_auth ->> 'error',
          'message', case v_auth ->> 'error'
            when 'rate_limited' then format('rate limit of %s requests per minute exceeded',
                                            v_auth #>> '{rate,limit}')
            when 'api_key_revoked' then 'the API key has been revoked'
            when 'api_key_expired' then 'the API key has expired'
            when 'tenant_suspended' then 'the tenant of this API key is suspended'
            else 'the API key is not valid' end,
          'details', case when v_auth ? 'retry_after'
                          then jsonb_build_object('retry_after', (v_auth -> 'retry_after'))
                     end,
          'hint', case when v_auth ->> 'error' = 'rate_limited'
                       then 'wait for the window to reset (Retry-After seconds)'
                       else 'send Authorization: Bearer lc_... with a valid key' end)::text,
        detail = jsonb_build_object('status', (v_auth -> 'status'),
                                    'headers', v_headers)::text;
    end if;
    v_claims := v_auth - 'rate';
  end if;
  perform set_config('request.jwt.claims', v_claims::text, true);
  perform set_config('request.headers', coalesce(p_headers, '{}'), true);
  perform set_config('request.method', coalesce(p_method, ''), true);
  perform set_config('request.path', coalesce(p_path, ''), true);
  perform set_config('response.status', '', true);
  perform set_config('response.headers', '', true);
  return v_claims ->> 'role';
end
$$;

reset role;
