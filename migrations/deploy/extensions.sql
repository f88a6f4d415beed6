-- Deploy loopctl:extensions to pg
begin;
\ir ../../sql/extensions.sql
commit;
