-- Every grant in one place. Nothing is granted to PUBLIC; API roles reach data only through
-- the api schema (security_invoker views need SELECT on the tables behind them, and RLS
-- filters the rows; without USAGE on schema app the tables cannot be named directly).

-- Identity resolver (loopctl_auth): reads keys, agents, tenants across tenants.
grant select on app.tenants, app.agents, app.analyst_roles to loopctl_auth;
grant select, insert on app.api_keys to loopctl_auth;
grant update (last_used_at) on app.api_keys to loopctl_auth;
grant insert on app.tenants to loopctl_auth;
grant execute on function app.mint_key(uuid, text, text, uuid, timestamptz, uuid, uuid),
  app.key_json(app.api_keys), app.generate_raw_key(), app.key_hash(text),
  app.raise_error(integer, text, text, jsonb, text) to loopctl_auth;

-- Every role that runs policies or functions resolves the caller.
grant execute on function app.current_identity(), app.current_tenant_id()
  to loopctl_owner, loopctl_audit, loopctl_anon, loopctl_user, loopctl_orchestrator,
     loopctl_agent, loopctl_analyst;

-- The gateway authenticates keys before it switches role.
grant execute on function auth.authenticate(text) to authenticator;

grant execute on function api.whoami() to loopctl_user, loopctl_orchestrator, loopctl_agent;

-- Shared helpers used inside API functions (run as loopctl_owner) and by other owners.
grant execute on function app.emit_event(uuid, text, jsonb, uuid, text, uuid),
  app.assert_budget_allows(uuid, uuid, uuid) to loopctl_owner;
