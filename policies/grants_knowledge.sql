-- Grants for functions/knowledge.sql (API roles get EXECUTE explicitly; nothing to PUBLIC).
-- Worker-side functions (claim / complete / fail / insert_draft / store_embedding / autolink)
-- are granted to nobody: only the worker's privileged connection runs them.

-- API functions run as loopctl_owner, which needs the superuser-owned embedding helpers.
grant execute on function app.embed(text), app.knowledge_setting(text),
  app.knowledge_active_model() to loopctl_owner;

do $$
declare
  f regprocedure;
begin
  for f in select p.oid::regprocedure from pg_proc p join pg_namespace n on n.oid = p.pronamespace
            where n.nspname = 'api' and p.proname like 'knowledge\_%'
  loop
    execute format('revoke all on function %s from public', f);
    execute format('grant execute on function %s to loopctl_user, loopctl_orchestrator, '
                   'loopctl_agent', f);
  end loop;
end
$$;
