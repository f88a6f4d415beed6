-- Deploy loopctl:audit_tables to pg
begin;
\ir ../../sql/audit_tables.sql
commit;
