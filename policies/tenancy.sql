-- Row-level security: every tenant table, enabled and forced (so the owner of the tables
-- and the SECURITY DEFINER functions it owns are filtered too). One rule, applied to all:
-- a row is visible and writable only when its tenant is the caller's tenant, as resolved
-- by app.current_tenant_id(). The sub-select makes it one evaluation per statement.
--
-- The loop covers every table in app and audit, so a new table cannot be forgotten;
-- tests/test_tenancy.py fails if any table lacks forced RLS.
do $$
declare
  t record;
  v_tenant_col text;
begin
  for t in
    select c.oid::regclass as tbl, n.nspname as schema, c.relname as name
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname in ('app', 'audit') and c.relkind in ('r', 'p')
  loop
    v_tenant_col := case when t.schema = 'app' and t.name = 'tenants' then 'id'
                         else 'tenant_id' end;
    execute format('alter table %s enable row level security', t.tbl);
    execute format('alter table %s force row level security', t.tbl);
    execute format('drop policy if exists tenant_isolation on %s', t.tbl);
    execute format(
      'create policy tenant_isolation on %s using (%I = (select app.current_tenant_id())) '
      'with check (%I = (select app.current_tenant_id()))', t.tbl, v_tenant_col, v_tenant_col);
  end loop;
end
$$;

-- The audit trail is written by triggers and sealed by the worker as loopctl_audit, for
-- whichever tenant the change belongs to; no API role can become loopctl_audit.
do $$
declare
  t text;
begin
  foreach t in array array['audit.entries', 'audit.pending', 'audit.chain', 'audit.chain_head']
  loop
    execute format('drop policy if exists audit_owner on %s', t);
    execute format('create policy audit_owner on %s to loopctl_audit using (true) '
                   'with check (true)', t);
  end loop;
end
$$;
