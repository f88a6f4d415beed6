-- Deploy loopctl:schemas to pg
begin;
\ir ../../sql/schemas.sql
commit;
