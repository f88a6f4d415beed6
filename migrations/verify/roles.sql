-- Verify loopctl:roles on pg: every role exists with the right attributes.
select 1 / (count(*) = 9)::int from pg_roles
 where (rolname = 'authenticator' and rolcanlogin and not rolinherit and not rolsuper)
    or (rolname in ('loopctl_anon', 'loopctl_user', 'loopctl_orchestrator', 'loopctl_agent',
                    'loopctl_owner', 'loopctl_audit', 'loopctl_analyst', 'loopctl_auth')
        and not rolcanlogin and not rolsuper);
select 1 / (not pg_has_role('authenticator', 'loopctl_audit', 'member'))::int;
select 1 / (not pg_has_role('authenticator', 'loopctl_owner', 'member'))::int;
