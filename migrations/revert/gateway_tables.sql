-- Revert loopctl:gateway_tables from pg
begin;
drop table if exists app.rate_limits cascade;
commit;
