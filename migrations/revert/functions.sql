-- Revert loopctl:functions from pg: drop every function, view, policy and type of the API
-- layer (the tables stay; they belong to the table changes).
begin;
do $$
declare
  r record;
begin
  for r in select p.oid::regprocedure as fn
             from pg_proc p join pg_namespace n on n.oid = p.pronamespace
            where n.nspname in ('app', 'api', 'audit', 'auth')
              and not exists (select 1 from pg_depend d
                               where d.objid = p.oid and d.deptype = 'e')
  loop
    execute format('drop function if exists %s cascade', r.fn);
  end loop;
  for r in select c.oid::regclass as v from pg_class c join pg_namespace n on n.oid = c.relnamespace
            where n.nspname = 'api' and c.relkind in ('v', 'm')
  loop
    execute format('drop view if exists %s cascade', r.v);
  end loop;
  for r in select policyname, schemaname, tablename from pg_policies
            where schemaname in ('app', 'audit')
  loop
    execute format('drop policy if exists %I on %I.%I', r.policyname, r.schemaname, r.tablename);
  end loop;
end
$$;
drop type if exists app.identity cascade;
commit;
