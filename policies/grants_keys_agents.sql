-- Grants for functions/keys_agents.sql (API roles get EXECUTE / SELECT explicitly; nothing to PUBLIC).
grant execute on function api.get_tenant(), api.list_agents(), api.get_agent(uuid)
  to loopctl_user, loopctl_orchestrator, loopctl_agent;
grant execute on function api.update_tenant_settings(jsonb),
  api.create_api_key(text, text, uuid, timestamptz), api.list_api_keys(),
  api.revoke_api_key(uuid), api.rotate_api_key(uuid)
  to loopctl_user, loopctl_orchestrator, loopctl_agent;  -- the functions demand 'user'
grant execute on function api.register_agent(text, text),
  api.create_dispatch(text, text, uuid, integer, text), api.list_dispatches()
  to loopctl_user, loopctl_orchestrator, loopctl_agent;

-- security_invoker views read the tables as the caller; RLS picks the tenant's rows.
-- key_hash is never granted: no API role can read a key's hash, even of its own tenant.
-- Key metadata is for tenant admins (user keys) and analysts only.
grant select on api.agents to loopctl_user, loopctl_orchestrator, loopctl_agent, loopctl_analyst;
grant select on app.agents to loopctl_user, loopctl_orchestrator, loopctl_agent, loopctl_analyst;
grant select on api.api_keys to loopctl_user, loopctl_analyst;
grant select (tenant_id, id, name, role, key_prefix, agent_id, dispatch_id, expires_at,
              revoked_at, last_used_at, created_at)
  on app.api_keys to loopctl_user, loopctl_analyst;
