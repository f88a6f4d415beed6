-- Revert loopctl:cost_tables from pg
begin;
drop table if exists app.cost_anomalies, app.budget_alerts, app.token_budgets, app.cost_totals,
  app.token_usage_reports, app.skill_versions, app.skills cascade;
commit;
