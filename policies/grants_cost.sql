-- Grants for cost intelligence (functions/cost.sql, functions/budgets.sql). Nothing to PUBLIC.

-- The state machine (functions owned by loopctl_owner) records a report's token usage and
-- asks whether a blocking budget refuses a claim.
grant execute on function app.record_token_usage(uuid, jsonb),
  app.assert_budget_allows(uuid, uuid, uuid), app.detect_cost_anomalies(uuid, uuid)
  to loopctl_owner;

grant execute on function
  api.report_token_usage(uuid, bigint, bigint, text, bigint, text, text, uuid, integer, integer,
                         jsonb)
  to loopctl_agent, loopctl_orchestrator;
grant execute on function
  api.correct_token_usage(uuid, bigint, bigint, text, bigint, text, text, uuid, integer, integer,
                          jsonb, text),
  api.story_token_usage(uuid)
  to loopctl_agent, loopctl_orchestrator, loopctl_user;
grant execute on function api.delete_token_usage(uuid) to loopctl_user;
