-- Verify loopctl:functions on pg
select 'app.current_identity()'::regprocedure, 'app.current_tenant_id()'::regprocedure,
       'auth.authenticate(text)'::regprocedure;
-- Every table in app and audit has RLS enabled and forced.
select 1 / (count(*) = 0)::int from pg_class c join pg_namespace n on n.oid = c.relnamespace
 where n.nspname in ('app', 'audit') and c.relkind = 'r'
   and not (c.relrowsecurity and c.relforcerowsecurity);
-- keys_agents
select 'api.register_agent(text, text)'::regprocedure,
       'api.create_dispatch(text, text, uuid, integer, text)'::regprocedure,
       'api.create_api_key(text, text, uuid, timestamptz)'::regprocedure;
-- Cost intelligence: the hooks the state machine calls.
select 'app.record_token_usage(uuid, jsonb)'::regprocedure,
       'app.assert_budget_allows(uuid, uuid, uuid)'::regprocedure;
-- Audit: the sealer, the verifier and the change feed exist; app.stories is audited.
select 'audit.seal(uuid, integer)'::regprocedure, 'audit.verify_chain(uuid)'::regprocedure,
       'api.changes(text, uuid, text, text, integer)'::regprocedure;
select 1 / count(*)::int from pg_trigger
 where tgrelid = 'app.stories'::regclass and tgname = 'audit_record_change';
-- The state machine and its single gate function.
select 'app.custody_gate(app.stories, app.identity, text)'::regprocedure,
       'api.verify_story(uuid, text, text, text)'::regprocedure,
       'api.bulk_verify(uuid[], text, text, text)'::regprocedure;
-- Work model: the import and the reads the gateway and MCP call.
select 'api.import_project(uuid, jsonb, boolean)'::regprocedure,
       'api.list_stories(uuid, text, text, uuid, integer, integer)'::regprocedure,
       'app.story_blockers(uuid, uuid)'::regprocedure, 'api.stories'::regclass;
-- Passkey signup (functions/signup.sql)
select 'auth.signup_begin(text,text,text,text)'::regprocedure,
       'auth.signup_finish(bytea,bytea,bytea,bigint,text[],uuid,text,text)'::regprocedure,
       'auth.signin_finish(bytea,bytea,bigint,text)'::regprocedure;
-- Webhooks: the outbox fan-out trigger, the worker's claim/record functions, the API.
select 'app.webhook_claim(text, integer, double precision)'::regprocedure,
       'api.create_webhook(text, text[], uuid, text)'::regprocedure;
select 1 / count(*)::int from pg_trigger where tgname = 'webhook_fanout'
   and tgrelid = 'app.events'::regclass;
-- Gateway (issue #4): authentication with the shared rate limit, request settings.
select 'auth.authenticate_request(text)'::regprocedure,
       'auth.assume_request(boolean, text, text, text, text)'::regprocedure;
-- knowledge wiki
select 'app.embed(text)'::regprocedure,
       'api.knowledge_search(text, text, uuid, text, integer)'::regprocedure,
       'app.knowledge_claim_jobs(text, integer, integer)'::regprocedure;
