-- Verify loopctl:core_tables on pg: the tables exist, and every tenant table's primary key
-- leads with tenant_id (app.tenants is keyed by the tenant id itself).
select 1 / (count(*) = 15)::int from pg_tables where schemaname = 'app' and tablename in
  ('tenants', 'agents', 'api_keys', 'dispatches', 'analyst_roles', 'projects', 'epics',
   'stories', 'acceptance_criteria', 'story_dependencies', 'epic_dependencies', 'artifacts',
   'reviews', 'verification_results', 'custody_violations');
select 1 / (count(*) = 0)::int
  from pg_constraint c join pg_class t on t.oid = c.conrelid
  join pg_namespace n on n.oid = t.relnamespace
 where n.nspname = 'app' and c.contype in ('p', 'f') and t.relname <> 'tenants'
   and (select attname from pg_attribute where attrelid = t.oid and attnum = c.conkey[1])
       <> 'tenant_id';
