-- The event outbox (SPEC §10): state changes call app.emit_event in their own transaction,
-- so an event exists exactly when its change committed. The webhook worker consumes them.
set role loopctl_owner;

create or replace function app.emit_event(
  p_tenant_id uuid, p_event_type text, p_payload jsonb,
  p_project_id uuid default null, p_entity_type text default null, p_entity_id uuid default null
) returns bigint
language plpgsql volatile as $$
declare
  v_id bigint;
begin
  insert into app.events (tenant_id, event_type, project_id, entity_type, entity_id, payload)
  values (p_tenant_id, p_event_type, p_project_id, p_entity_type, p_entity_id,
          coalesce(p_payload, '{}'::jsonb))
  returning id into v_id;
  -- Wakes the webhook worker (delivered at commit; nothing on rollback).
  perform pg_notify('loopctl_events', p_tenant_id::text);
  return v_id;
end
$$;

reset role;
