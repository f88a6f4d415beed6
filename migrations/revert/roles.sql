-- Revert loopctl:roles from pg. Roles are shared by every loopctl database in the cluster:
-- a role still used by another database is kept (with a notice) rather than failing.
do $$
declare
  name text;
begin
  foreach name in array array['authenticator', 'loopctl_anon', 'loopctl_user',
      'loopctl_orchestrator', 'loopctl_agent', 'loopctl_owner', 'loopctl_audit',
      'loopctl_analyst', 'loopctl_auth']
  loop
    continue when not exists (select 1 from pg_roles where rolname = name);
    execute format('drop owned by %I', name);
    begin
      execute format('drop role %I', name);
    exception when dependent_objects_still_exist then
      raise notice 'role % kept: another database still uses it', name;
    end;
  end loop;
end
$$;
