-- Grants for functions/state_machine.sql. The API roles may call the api functions (each
-- checks the caller's role, state and gates itself); nothing to PUBLIC or loopctl_anon,
-- and the app.sm_* internals stay reachable only through them.
revoke all on function
  api.contract_story(uuid, text, int), api.claim_story(uuid), api.start_story(uuid),
  api.request_review(uuid), api.unclaim_story(uuid), api.report_story(uuid, jsonb, jsonb),
  api.review_complete(uuid, text, int, int, int, text, jsonb),
  api.verify_story(uuid, text, text, text), api.reject_story(uuid, text, jsonb),
  api.force_unclaim_story(uuid), api.backfill_story(uuid, text, text),
  api.bulk_claim(uuid[]), api.bulk_verify(uuid[], text, text, text),
  api.bulk_reject(uuid[], text), api.verify_all_in_epic(uuid, text, text)
  from public, loopctl_anon;

grant execute on function
  api.contract_story(uuid, text, int), api.claim_story(uuid), api.start_story(uuid),
  api.request_review(uuid), api.unclaim_story(uuid), api.report_story(uuid, jsonb, jsonb),
  api.review_complete(uuid, text, int, int, int, text, jsonb),
  api.verify_story(uuid, text, text, text), api.reject_story(uuid, text, jsonb),
  api.force_unclaim_story(uuid), api.backfill_story(uuid, text, text),
  api.bulk_claim(uuid[]), api.bulk_verify(uuid[], text, text, text),
  api.bulk_reject(uuid[], text), api.verify_all_in_epic(uuid, text, text)
  to loopctl_agent, loopctl_orchestrator, loopctl_user;
