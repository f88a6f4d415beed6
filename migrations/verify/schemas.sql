-- Verify loopctl:schemas on pg
select 1 / (count(*) = 4)::int from pg_namespace where nspname in ('app', 'audit', 'api', 'auth');
select 1 / (pg_catalog.pg_get_userbyid(nspowner) = 'loopctl_audit')::int
  from pg_namespace where nspname = 'audit';
-- PUBLIC may not use the private schemas.
select 1 / (not has_schema_privilege('public', 'app', 'usage'))::int;
-- Default privileges revoke EXECUTE from PUBLIC for functions of loopctl_owner.
select 1 / count(*)::int from pg_default_acl d
  where d.defaclobjtype = 'f' and d.defaclrole = 'loopctl_owner'::regrole;
