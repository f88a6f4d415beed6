-- Deploy loopctl:webhook_tables to pg
begin;
\ir ../../sql/webhook_tables.sql
commit;
