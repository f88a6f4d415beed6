-- Deploy loopctl:functions to pg
-- The SQL API layer: idempotent files under functions/ and policies/, applied in order.
-- Rework this change (sqitch rework functions) when one of those files changes after a tag.
begin;
\ir ../../functions/types.sql
\ir ../../functions/errors.sql
\ir ../../functions/identity.sql
\ir ../../functions/events.sql
\ir ../../functions/budgets.sql
\ir ../../functions/keys_agents.sql
\ir ../../functions/work_model.sql
\ir ../../functions/state_machine.sql
\ir ../../functions/gateway.sql
\ir ../../functions/cost.sql
\ir ../../functions/webhooks.sql
\ir ../../functions/knowledge.sql
\ir ../../functions/signup.sql
-- Last among functions: attaches audit triggers to every tenant table that exists by now.
\ir ../../functions/audit.sql
\ir ../../policies/tenancy.sql
\ir ../../policies/grants.sql
\ir ../../policies/grants_keys_agents.sql
\ir ../../policies/grants_work_model.sql
\ir ../../policies/grants_state_machine.sql
\ir ../../policies/grants_audit.sql
\ir ../../policies/grants_gateway.sql
\ir ../../policies/grants_cost.sql
\ir ../../policies/grants_webhooks.sql
\ir ../../policies/grants_knowledge.sql
\ir ../../policies/grants_signup.sql
commit;
