-- Revert loopctl:cost_tables from pg
begin;
-- drop table if exists ... cascade;
commit;
