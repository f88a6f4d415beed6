-- Composite types shared by the functions. Types cannot be `create or replace`d, so each
-- is created once; a changed type needs a new sqitch change of its own.
set role loopctl_owner;
do $$
begin
  if to_regtype('app.identity') is null then
    -- The resolved caller of a request (app.current_identity()).
    create type app.identity as (
      tenant_id    uuid,
      key_id       uuid,
      role         text,       -- 'user' | 'orchestrator' | 'agent' | 'analyst'
      agent_id     uuid,
      lineage      uuid[],     -- dispatch lineage of the key's agent, root first
      lineage_root uuid
    );
  end if;
end
$$;
reset role;
