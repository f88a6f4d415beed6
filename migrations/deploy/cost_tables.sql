-- Deploy loopctl:cost_tables to pg
begin;
\ir ../../sql/cost_tables.sql
commit;
