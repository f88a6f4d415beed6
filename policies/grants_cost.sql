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

grant execute on function
  api.set_token_budget(text, uuid, bigint, bigint, integer, text), api.delete_budget(uuid),
  api.create_skill(text, text), api.create_skill_version(uuid, text, text)
  to loopctl_user, loopctl_orchestrator;
grant execute on function api.list_budgets(text),
  api.list_cost_anomalies(boolean, uuid, uuid, integer, integer),
  api.list_skills(), api.skill_cost_performance(uuid)
  to loopctl_user, loopctl_orchestrator, loopctl_agent;
grant execute on function api.resolve_cost_anomaly(uuid, text) to loopctl_user;

-- Analytics views are security_invoker: their readers (API keys and the tenant's analyst
-- logins) need SELECT on what they read; RLS keeps each to its own tenant. Without USAGE on
-- schema app none of these can be named directly.
grant select on api.agent_cost_ranking, api.model_mix, api.cost_by_epic, api.cost_by_project,
  api.cost_daily
  to loopctl_user, loopctl_orchestrator, loopctl_agent, loopctl_analyst;
grant select on app.effective_token_usage, app.token_usage_reports, app.token_budgets
  to loopctl_user, loopctl_orchestrator, loopctl_agent, loopctl_analyst;
grant select (tenant_id, id, name) on app.agents
  to loopctl_user, loopctl_orchestrator, loopctl_agent, loopctl_analyst;
grant select (tenant_id, id, project_id, number, title) on app.epics
  to loopctl_user, loopctl_orchestrator, loopctl_agent, loopctl_analyst;
grant select (tenant_id, id, name, slug) on app.projects
  to loopctl_user, loopctl_orchestrator, loopctl_agent, loopctl_analyst;
grant execute on function api.analytics_agents(integer, integer),
  api.analytics_models(integer, integer), api.analytics_projects(integer, integer),
  api.analytics_epics(uuid, integer, integer),
  api.analytics_daily(uuid, date, date, integer, integer),
  api.list_story_token_usage(uuid)
  to loopctl_user, loopctl_orchestrator, loopctl_agent;
