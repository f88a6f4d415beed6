-- Verify loopctl:audit_tables on pg
select 1 / (pg_catalog.pg_get_userbyid(relowner) = 'loopctl_audit')::int
  from pg_class where oid = 'audit.entries'::regclass;
select id, tenant_id, action, entity_type, old_state, new_state from audit.entries where false;
select tenant_id, seq, entry_id, prev_hash, entry_hash from audit.chain where false;
select tenant_id, id, event_type, payload from app.events where false;
