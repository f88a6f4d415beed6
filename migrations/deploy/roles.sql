-- Deploy loopctl:roles to pg
begin;
\ir ../../sql/roles.sql
commit;
