-- Revert loopctl:webhook_tables from pg (the loopctl_worker role is cluster-wide and stays:
-- other loopctl databases on the same server may use it).
begin;
drop table if exists app.webhook_attempts, app.webhook_deliveries, app.webhook_secrets,
  app.webhooks cascade;
commit;
