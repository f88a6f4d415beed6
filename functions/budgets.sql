-- Budget enforcement hooks called by the state machine (issue #5 fills these in).
set role loopctl_owner;

-- Raises 402 budget_exceeded when a blocking budget covers this claim. Until issue #5
-- lands budgets, no budget exists, so nothing blocks.
create or replace function app.assert_budget_allows(
  p_tenant_id uuid, p_story_id uuid, p_agent_id uuid
) returns void
language plpgsql stable as $$
begin
  return;
end
$$;

reset role;
