-- Verify loopctl:gateway_tables on pg
select tenant_id, key_id, window_start, hits from app.rate_limits where false;
select 1 / (c.relpersistence = 'u')::int from pg_class c where c.oid = 'app.rate_limits'::regclass;
