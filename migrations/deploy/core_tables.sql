-- Deploy loopctl:core_tables to pg
begin;
\ir ../../sql/core_tables.sql
commit;
