-- Schemas: tables are private (app, audit); clients see only the api schema.
create schema if not exists app authorization loopctl_owner;
create schema if not exists audit authorization loopctl_audit;
create schema if not exists api authorization loopctl_owner;
create schema if not exists auth authorization loopctl_auth;

comment on schema app is 'loopctl private tables: never granted to API roles directly';
comment on schema audit is 'append-only audit trail, owned by loopctl_audit';
comment on schema auth is 'gateway-only functions (authenticate, rate limit): usable by authenticator';
comment on schema api is 'the SQL API: functions (RPC) and security_invoker views';

-- Nothing is reachable through PUBLIC: API roles get exactly what grants.sql says.
revoke all on schema app, audit, api, auth from public;
grant usage on schema auth to authenticator;
grant usage on schema api to loopctl_anon, loopctl_user, loopctl_orchestrator, loopctl_agent,
  loopctl_analyst;
-- SECURITY DEFINER functions owned by loopctl_owner write the audit trail via triggers that
-- run as loopctl_audit; the owner needs to resolve names in both private schemas.
grant usage on schema app to loopctl_audit;
grant usage on schema audit to loopctl_owner;
-- loopctl_auth owns the identity resolver and tenant creation, which live in app.
grant usage, create on schema app to loopctl_auth;

-- New functions are not executable by PUBLIC, whoever creates them (the migrating role,
-- the app owner or the audit owner): each grant must be explicit.
alter default privileges revoke execute on functions from public;
alter default privileges for role loopctl_owner revoke execute on functions from public;
alter default privileges for role loopctl_audit revoke execute on functions from public;
alter default privileges for role loopctl_auth revoke execute on functions from public;
