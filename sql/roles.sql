-- Roles in the PostgREST model. Roles are cluster-wide, so creation is idempotent: several
-- loopctl databases (tests clone one per test) share them.
--
--   authenticator          LOGIN NOINHERIT: the gateway connects as it, then SET LOCAL ROLE
--   loopctl_anon           unauthenticated requests (discovery only)
--   loopctl_user           tenant admin key       \
--   loopctl_orchestrator   orchestrator key        > the API roles, one per key role
--   loopctl_agent          implementer agent key  /
--   loopctl_owner          owns the app and api schemas and the SECURITY DEFINER functions
--   loopctl_audit          owns the audit trail; no API role is a member of it
--   loopctl_analyst        group of the per-tenant analyst login roles (reporting views only)
--   loopctl_auth           owns the identity resolver: reads keys across tenants (BYPASSRLS)
do $$
declare
  r record;
begin
  for r in select * from (values
      ('authenticator',        'login noinherit nocreatedb nocreaterole nosuperuser'),
      ('loopctl_anon',         'nologin'),
      ('loopctl_user',         'nologin'),
      ('loopctl_orchestrator', 'nologin'),
      ('loopctl_agent',        'nologin'),
      ('loopctl_owner',        'nologin'),
      ('loopctl_audit',        'nologin'),
      ('loopctl_analyst',      'nologin'),
      ('loopctl_auth',         'nologin bypassrls')) as t(name, attrs)
  loop
    if not exists (select 1 from pg_roles where rolname = r.name) then
      execute format('create role %I %s', r.name, r.attrs);
    else
      execute format('alter role %I %s', r.name, r.attrs);
    end if;
  end loop;
end
$$;

-- The gateway may become any API role, and nothing else.
grant loopctl_anon, loopctl_user, loopctl_orchestrator, loopctl_agent to authenticator;
