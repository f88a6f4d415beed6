-- Grants for functions/audit.sql (API roles get EXECUTE / SELECT explicitly; nothing to PUBLIC).

-- Append-only: nobody holds UPDATE, DELETE or TRUNCATE on the trail, not even its owner
-- (the append_only triggers also refuse them to everyone but a superuser).
revoke update, delete, truncate on audit.entries, audit.chain
  from public, loopctl_audit, loopctl_owner, loopctl_auth, loopctl_anon, loopctl_user,
       loopctl_orchestrator, loopctl_agent, loopctl_analyst;
-- Except one: foreign-key checks from audit.pending / audit.chain run as the owner of
-- audit.entries and lock the referenced row (SELECT ... FOR KEY SHARE), which needs UPDATE
-- on some column. The identity column cannot take a new value, and the append_only trigger
-- refuses any UPDATE anyway.
grant update (id) on audit.entries to loopctl_audit;
-- The sealer (loopctl_audit) consumes the pending queue and moves the head; nothing else.
revoke truncate on audit.pending, audit.chain_head from public, loopctl_audit;
revoke all on audit.entries, audit.chain, audit.pending, audit.chain_head
  from public, loopctl_owner, loopctl_auth, loopctl_anon, loopctl_user,
       loopctl_orchestrator, loopctl_agent, loopctl_analyst;

-- API functions (owned by loopctl_owner) read the caller's tenant trail (RLS filters by
-- tenant) and seal / verify the caller's tenant through the loopctl_audit functions.
grant select on audit.entries, audit.chain to loopctl_owner;
grant execute on function audit.seal(uuid, integer), audit.verify_chain(uuid),
  audit.seal_all(integer), audit.significant(jsonb) to loopctl_owner;

-- The trigger function and the sealer run as loopctl_audit.
grant execute on function app.current_identity() to loopctl_audit;

grant execute on function api.changes(text, uuid, text, text, integer),
  api.audit_entries(text, uuid, uuid, timestamptz, integer, integer),
  api.story_history(uuid),
  api.verify_audit_chain()
  to loopctl_user, loopctl_orchestrator, loopctl_agent;
