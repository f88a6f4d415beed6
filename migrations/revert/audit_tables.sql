-- Revert loopctl:audit_tables from pg
begin;
drop table if exists app.events, audit.chain_head, audit.chain, audit.pending,
  audit.entries cascade;
commit;
