-- Grants for functions/webhooks.sql (API roles get EXECUTE explicitly; nothing to PUBLIC).

-- The delivery machinery (owned by loopctl_worker, BYPASSRLS): exactly the tables it needs.
grant select on app.webhooks, app.webhook_secrets, app.events to loopctl_worker;
grant update (consecutive_exhaustions, status, disabled_reason, updated_at)
  on app.webhooks to loopctl_worker;
grant select, insert, update on app.webhook_deliveries to loopctl_worker;
grant select, insert, update on app.webhook_attempts to loopctl_worker;
grant execute on function app.webhook_message_id(uuid, bigint),
  app.webhook_event_matches(text[], text) to loopctl_worker;

-- Helpers run inside the API functions (owner loopctl_owner); name resolution is plpython.
grant execute on function app.resolve_host_addresses(text) to loopctl_owner;

-- The API: user keys manage subscriptions; user and orchestrator keys read them.
grant execute on function
  api.create_webhook(text, text[], uuid, text),
  api.update_webhook(uuid, text, text[], uuid, text, text, boolean),
  api.delete_webhook(uuid),
  api.test_webhook(uuid),
  api.replay_webhook(uuid, uuid, timestamptz)
  to loopctl_user;
grant execute on function
  api.list_webhooks(), api.get_webhook(uuid), api.webhook_deliveries(uuid, integer, integer)
  to loopctl_user, loopctl_orchestrator;
