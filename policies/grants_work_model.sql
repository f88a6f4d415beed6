-- Grants for functions/work_model.sql (API roles get EXECUTE / SELECT explicitly; nothing to PUBLIC).
--
-- Every work-model function is executable by the three API roles: the role rules (who may
-- create, import, delete) are checked inside each function, which answers a clean 403
-- instead of a bare "permission denied".
do $$
declare
  f regprocedure;
begin
  for f in
    select p.oid::regprocedure from pg_proc p join pg_namespace n on n.oid = p.pronamespace
     where n.nspname = 'api' and p.proname = any (array[
       'create_project', 'update_project', 'delete_project', 'get_project', 'list_projects',
       'create_epic', 'update_epic', 'delete_epic', 'get_epic',
       'create_story', 'update_story', 'delete_story', 'get_story',
       'update_acceptance_criterion', 'list_acceptance_criteria',
       'add_story_dependency', 'remove_story_dependency',
       'add_epic_dependency', 'remove_epic_dependency',
       'report_artifact', 'list_artifacts',
       'list_stories', 'ready_stories', 'blocked_stories',
       'project_progress', 'epic_progress', 'dependency_graph',
       'import_project', 'export_project'])
  loop
    execute format('grant execute on function %s to loopctl_user, loopctl_orchestrator, loopctl_agent', f);
  end loop;
end
$$;

-- Reading views: security_invoker, so the caller needs SELECT on the view and on the
-- table columns behind it; RLS on the tables filters the rows to the caller's tenant.
-- Without USAGE on schema app the API roles still cannot name the tables themselves.
grant select on api.projects, api.epics, api.stories, api.acceptance_criteria,
  api.story_dependencies, api.epic_dependencies, api.artifacts
  to loopctl_user, loopctl_orchestrator, loopctl_agent;
grant select (tenant_id, id, name, slug, repo_url, description, status, created_at, updated_at)
  on app.projects to loopctl_user, loopctl_orchestrator, loopctl_agent;
grant select (tenant_id, id, project_id, number, title, description, phase, position,
              created_at, updated_at)
  on app.epics to loopctl_user, loopctl_orchestrator, loopctl_agent;
grant select (tenant_id, id, project_id, epic_id, number, title, description, estimated_hours,
              agent_status, verified_status, assigned_agent_id, contracted_by_agent_id,
              reported_by_agent_id, verified_by_agent_id, backfill_reason, contracted_at,
              claimed_at, started_at, reported_done_at, verified_at, rejected_at, created_at,
              updated_at)
  on app.stories to loopctl_user, loopctl_orchestrator, loopctl_agent;
grant select (tenant_id, story_id, ac_id, position, description, status, updated_at)
  on app.acceptance_criteria to loopctl_user, loopctl_orchestrator, loopctl_agent;
grant select (tenant_id, story_id, depends_on_story_id, created_at)
  on app.story_dependencies to loopctl_user, loopctl_orchestrator, loopctl_agent;
grant select (tenant_id, epic_id, depends_on_epic_id, created_at)
  on app.epic_dependencies to loopctl_user, loopctl_orchestrator, loopctl_agent;
grant select (tenant_id, id, story_id, artifact_type, path, commit_sha, details,
              reported_by_agent_id, reported_by_key_id, created_at)
  on app.artifacts to loopctl_user, loopctl_orchestrator, loopctl_agent;
