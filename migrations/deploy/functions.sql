-- Deploy loopctl:functions to pg
-- The SQL API layer: idempotent files under functions/ and policies/, applied in order.
-- Rework this change (sqitch rework functions) when one of those files changes after a tag.
begin;
\ir ../../functions/types.sql
\ir ../../functions/errors.sql
\ir ../../functions/identity.sql
\ir ../../policies/tenancy.sql
\ir ../../policies/grants.sql
commit;
