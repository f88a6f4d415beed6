-- Deploy loopctl:signup_tables to pg
begin;
\ir ../../sql/signup_tables.sql
commit;
