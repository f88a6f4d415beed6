-- Revert loopctl:gateway_tables from pg
begin;
-- drop table if exists ... cascade;
commit;
