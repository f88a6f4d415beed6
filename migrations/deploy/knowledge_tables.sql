-- Deploy loopctl:knowledge_tables to pg
begin;
\ir ../../sql/knowledge_tables.sql
commit;
