-- Verify loopctl:webhook_tables on pg
select 1 / (pg_catalog.pg_get_userbyid(relowner) = 'loopctl_owner')::int
  from pg_class where oid = 'app.webhooks'::regclass;
select 1 / count(*)::int from pg_roles where rolname = 'loopctl_worker' and rolbypassrls;
select tenant_id, id, url, events, project_id, description, status, disabled_reason,
       consecutive_exhaustions, created_by_key_id, created_at, updated_at
  from app.webhooks where false;
select tenant_id, webhook_id, secret, created_at from app.webhook_secrets where false;
select tenant_id, id, webhook_id, event_id, event_type, message_id, kind, replay_of, status,
       attempts, next_attempt_at, lease_until, lease_token, leased_by, last_status_code,
       last_error, delivered_at, created_at, updated_at
  from app.webhook_deliveries where false;
select tenant_id, id, delivery_id, webhook_id, attempt, started_at, duration_ms, status_code,
       error, response_snippet, worker, lease_held, created_at
  from app.webhook_attempts where false;
