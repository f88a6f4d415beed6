-- Deploy loopctl:gateway_tables to pg
begin;
\ir ../../sql/gateway_tables.sql
commit;
