-- Revert loopctl:core_tables from pg
begin;
drop table if exists app.custody_violations, app.verification_results, app.reviews,
  app.artifacts, app.epic_dependencies, app.story_dependencies, app.acceptance_criteria,
  app.stories, app.epics, app.projects, app.analyst_roles, app.dispatches, app.api_keys,
  app.agents, app.tenants cascade;
commit;
