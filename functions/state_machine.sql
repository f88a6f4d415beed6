-- Story lifecycle and the three identity gates (SPEC §5, issue #3).
--
-- Layout: api.<action> functions are thin wrappers (identity -> app.sm_<action> -> result).
-- app.sm_<action>(identity, story_id, ...) does the work in a fixed order: role, lock the
-- story row (404 when invisible), custody halt, state, gates, validation, write, events.
-- Bulk paths and verify-all call the very same app.sm_* functions, one subtransaction per
-- item, so no path can skip a gate. The gates themselves live in app.custody_gate() only.
--
-- Internal results are either {"story", "next_actions", ...} or, for a gate violation,
-- {"error": {code, message, details, hint}, "status": 409}: a violation is *returned*, not
-- raised, so the custody_violations row commits while the caller still sees a 409
-- (single actions turn it into app.error_response, bulk paths into a failed item).
set role loopctl_owner;

-- What a story can do next, from its two statuses alone.
create or replace function app.story_next_actions(p_agent_status text, p_verified_status text)
returns text[] language sql immutable parallel safe as $$
  select case p_agent_status
           when 'pending' then
             case when p_verified_status = 'unverified' then array['contract', 'backfill']
                  else array['contract'] end
           when 'contracted' then array['claim', 'force_unclaim']
           when 'assigned' then array['start', 'unclaim', 'force_unclaim']
           when 'implementing' then
             array['request_review', 'report', 'unclaim', 'force_unclaim']
           when 'reported_done' then
             case when p_verified_status = 'verified' then array['force_unclaim']
                  else array['review_complete', 'verify', 'reject', 'force_unclaim'] end
           else array[]::text[] end
         -- A verified story can always be rejected (SPEC §5: reject from reported_done or verified).
         || case when p_verified_status = 'verified' then array['reject'] else array[]::text[] end
$$;

-- Is the caller the story's implementer? Same agent (any key bound to it) or the same
-- dispatch-lineage root (a sub-agent minted by the implementer, or its parent).
create or replace function app.is_implementer(s app.stories, p_me app.identity)
returns boolean language sql immutable as $$
  select coalesce(p_me.agent_id = s.assigned_agent_id, false)
      or coalesce(p_me.lineage_root = s.implementer_root, false)
$$;

-- THE identity gates, in one place: the violation code for p_action, or null.
--   report          -> self_report_blocked   (the implementer cannot report its own work)
--   review_complete -> self_review_blocked
--   verify, reject  -> self_verify_blocked   (a verdict on one's own work, either way)
--   backfill        -> backfill_not_allowed  (marking done+verified a story someone claimed
--                      or started would skip report, review and verify altogether)
create or replace function app.custody_gate(s app.stories, p_me app.identity, p_action text)
returns text language sql immutable as $$
  select case
    when p_action = 'report' and app.is_implementer(s, p_me) then 'self_report_blocked'
    when p_action = 'review_complete' and app.is_implementer(s, p_me) then 'self_review_blocked'
    when p_action in ('verify', 'reject') and app.is_implementer(s, p_me)
      then 'self_verify_blocked'
    when p_action = 'backfill'
         and (s.agent_status <> 'pending' or s.claimed_at is not null
              or s.started_at is not null or s.assigned_agent_id is not null)
      then 'backfill_not_allowed'
  end
$$;

-- The API result of an action. next_actions comes from the statuses; backfill is dropped
-- when the story's history already forbids it (claimed or started once).
create or replace function app.story_result(s app.stories) returns jsonb
language sql stable as $$
  select jsonb_build_object('story', to_jsonb(s),
           'next_actions', to_jsonb(case
             when app.custody_gate(s, null::app.identity, 'backfill') is null
               then app.story_next_actions(s.agent_status, s.verified_status)
             else array_remove(app.story_next_actions(s.agent_status, s.verified_status),
                               'backfill') end))
$$;

-- Records an attempted violation (row + custody.violation event) and returns the internal
-- error result. The caller must not have changed anything else before this point.
create or replace function app.record_custody_violation(
  s app.stories, p_me app.identity, p_action text, p_code text
) returns jsonb
language plpgsql volatile as $$
declare
  v_message text := case p_code
    when 'self_report_blocked' then 'the implementer of a story cannot report it done'
    when 'self_review_blocked' then 'the implementer of a story cannot review it'
    when 'self_verify_blocked' then 'the implementer of a story cannot verify or reject it'
    when 'backfill_not_allowed' then
      'only a story that was never claimed or started can be backfilled'
    else 'custody violation' end;
  v_details jsonb := jsonb_build_object(
    'story_id', s.id, 'attempted_action', p_action,
    'current_agent_status', s.agent_status, 'current_verified_status', s.verified_status,
    'caller_agent_id', p_me.agent_id, 'caller_lineage_root', p_me.lineage_root);
begin
  insert into app.custody_violations (tenant_id, story_id, action, code, key_id, agent_id,
                                      lineage_root)
  values (s.tenant_id, s.id, p_action, p_code, p_me.key_id, p_me.agent_id, p_me.lineage_root);
  perform app.emit_event(s.tenant_id, 'custody.violation',
    v_details || jsonb_build_object('code', p_code, 'key_id', p_me.key_id),
    s.project_id, 'story', s.id);
  return jsonb_build_object('status', 409, 'error', jsonb_build_object(
    'code', p_code, 'message', v_message, 'details', v_details, 'hint', null));
end
$$;

-- Tenant policy custody_halt_after_violations = N: with N or more attempted violations in
-- the last hour, every custody write is refused until the hour rolls over.
create or replace function app.assert_custody_not_halted(p_tenant_id uuid)
returns void language plpgsql stable as $$
declare
  v_limit int;
  v_recent int;
begin
  begin
    v_limit := (app.tenant_settings(p_tenant_id) ->> 'custody_halt_after_violations')::int;
  exception when invalid_text_representation or numeric_value_out_of_range then
    v_limit := null;  -- a malformed setting is treated as "off", never as a 500
  end;
  if v_limit is null or v_limit <= 0 then
    return;
  end if;
  select count(*) into v_recent from (
    select 1 from app.custody_violations
     where tenant_id = p_tenant_id and created_at > now() - interval '1 hour'
     limit v_limit) r;
  if v_recent >= v_limit then
    perform app.raise_error(409, 'custody_halted',
      format('custody writes are halted: %s custody violations in the last hour', v_recent),
      jsonb_build_object('violations_last_hour', v_recent, 'halt_after', v_limit),
      'a tenant admin can review the custody violations and change custody_halt_after_violations');
  end if;
end
$$;

-- Locks the story row for the rest of the transaction; 404 for unknown or invisible ids.
create or replace function app.lock_story(p_story_id uuid) returns app.stories
language plpgsql volatile as $$
declare
  s app.stories;
begin
  select * into s from app.stories
   where tenant_id = app.current_tenant_id() and id = p_story_id
   for update;
  if not found then
    perform app.raise_error(404, 'story_not_found', 'story not found',
                            jsonb_build_object('story_id', p_story_id));
  end if;
  return s;
end
$$;

create or replace function app.invalid_transition(s app.stories, p_action text)
returns void language plpgsql immutable as $$
begin
  perform app.raise_error(409, 'invalid_transition',
    format('cannot %s a story that is %s/%s', p_action, s.agent_status, s.verified_status),
    jsonb_build_object('current_agent_status', s.agent_status,
                       'current_verified_status', s.verified_status,
                       'attempted_action', p_action),
    'see next_actions of the story for what it can do now');
end
$$;

create or replace function app.require_agent_identity(p_me app.identity, p_action text)
returns void language plpgsql immutable as $$
begin
  if p_me.agent_id is null then
    perform app.raise_error(403, 'agent_identity_required',
      format('%s requires a key bound to an agent', p_action),
      jsonb_build_object('action', p_action), 'register an agent with this key first');
  end if;
end
$$;

create or replace function app.require_assigned_agent(s app.stories, p_me app.identity,
                                                      p_action text)
returns void language plpgsql immutable as $$
begin
  perform app.require_agent_identity(p_me, p_action);
  if p_me.agent_id is distinct from s.assigned_agent_id then
    perform app.raise_error(403, 'not_assigned_agent',
      format('only the agent assigned to the story can %s it', p_action),
      jsonb_build_object('story_id', s.id, 'attempted_action', p_action));
  end if;
end
$$;

create or replace function app.require_text(p_value text, p_field text, p_max int)
returns void language plpgsql immutable as $$
begin
  if p_value is null or length(btrim(p_value)) = 0 or length(p_value) > p_max then
    perform app.raise_error(422, 'invalid_input',
      format('%s is required (1 to %s characters)', p_field, p_max),
      jsonb_build_object('field', p_field, 'max_length', p_max));
  end if;
end
$$;

-- story.status_changed (when a status moved) plus the action's own event, in this
-- transaction. The audit trigger names the change by loopctl.audit_action (set by callers).
create or replace function app.story_events(
  p_old app.stories, p_new app.stories, p_me app.identity, p_action text,
  p_event text, p_extra jsonb default '{}'::jsonb
) returns void
language plpgsql volatile as $$
declare
  v_base jsonb := jsonb_build_object(
    'story_id', p_new.id, 'number', p_new.number, 'project_id', p_new.project_id,
    'epic_id', p_new.epic_id, 'action', p_action,
    'actor', jsonb_build_object('key_id', p_me.key_id, 'agent_id', p_me.agent_id,
                                'role', p_me.role));
begin
  if (p_old.agent_status, p_old.verified_status)
     is distinct from (p_new.agent_status, p_new.verified_status) then
    perform app.emit_event(p_new.tenant_id, 'story.status_changed', v_base || jsonb_build_object(
      'from', jsonb_build_object('agent_status', p_old.agent_status,
                                 'verified_status', p_old.verified_status),
      'to', jsonb_build_object('agent_status', p_new.agent_status,
                               'verified_status', p_new.verified_status)),
      p_new.project_id, 'story', p_new.id);
  end if;
  if p_event is not null then
    perform app.emit_event(p_new.tenant_id, p_event, v_base || coalesce(p_extra, '{}'::jsonb),
                           p_new.project_id, 'story', p_new.id);
  end if;
end
$$;

-- epic.completed once every story of the epic is verified. The epic row lock serialises
-- the final check of concurrent verifies in one epic (each re-reads after the other
-- committed), so the event is neither lost nor doubled. Callers take it only after all their
-- story locks (bulk paths: at the very end, epics in id order), so it cannot deadlock.
create or replace function app.check_epic_completed(p_tenant_id uuid, p_epic_id uuid)
returns boolean language plpgsql volatile as $$
declare
  e app.epics;
begin
  select * into e from app.epics where tenant_id = p_tenant_id and id = p_epic_id
     for no key update;
  if not found or exists (select 1 from app.stories
                           where tenant_id = p_tenant_id and epic_id = p_epic_id
                             and verified_status <> 'verified') then
    return false;
  end if;
  perform app.emit_event(p_tenant_id, 'epic.completed',
    jsonb_build_object('epic_id', e.id, 'number', e.number, 'project_id', e.project_id,
                       'stories', (select count(*) from app.stories
                                    where tenant_id = p_tenant_id and epic_id = e.id)),
    e.project_id, 'epic', e.id);
  return true;
end
$$;

-- ---------------------------------------------------------------------------------------
-- The actions.
-- ---------------------------------------------------------------------------------------

create or replace function app.sm_contract(p_me app.identity, p_story_id uuid,
                                           p_title text, p_ac_count int)
returns jsonb language plpgsql volatile as $$
declare
  s app.stories;
  n app.stories;
  v_expected int;
begin
  perform app.require_role(p_me, array['agent', 'orchestrator'], 'contract');
  s := app.lock_story(p_story_id);
  perform app.assert_custody_not_halted(s.tenant_id);
  if s.agent_status <> 'pending' then
    perform app.invalid_transition(s, 'contract');
  end if;
  select count(*) into v_expected from app.acceptance_criteria
   where tenant_id = s.tenant_id and story_id = s.id;
  if p_title is distinct from s.title or p_ac_count is distinct from v_expected then
    perform app.raise_error(422, 'contract_mismatch',
      'the contract must name the story title exactly and count every acceptance criterion',
      jsonb_build_object('expected_title', s.title, 'expected_ac_count', v_expected,
                         'got_title', p_title, 'got_ac_count', p_ac_count));
  end if;
  perform set_config('loopctl.audit_action', 'story.contract', true);
  update app.stories set agent_status = 'contracted', contracted_by_agent_id = p_me.agent_id,
         contracted_at = now(), updated_at = now()
   where tenant_id = s.tenant_id and id = s.id
  returning * into n;
  perform app.story_events(s, n, p_me, 'contract', 'story.contracted',
    jsonb_build_object('ac_count', v_expected));
  return app.story_result(n);
end
$$;

create or replace function app.sm_claim(p_me app.identity, p_story_id uuid)
returns jsonb language plpgsql volatile as $$
declare
  s app.stories;
  n app.stories;
  v_blockers jsonb;
begin
  perform app.require_role(p_me, array['agent'], 'claim');
  perform app.require_agent_identity(p_me, 'claim');
  s := app.lock_story(p_story_id);
  perform app.assert_custody_not_halted(s.tenant_id);
  if s.agent_status <> 'contracted' then
    perform app.invalid_transition(s, 'claim');
  end if;
  -- Unverified story dependencies and unverified stories of prerequisite epics.
  select jsonb_agg(jsonb_build_object('story_id', b.id, 'number', b.number, 'title', b.title,
                     'agent_status', b.agent_status, 'verified_status', b.verified_status,
                     'epic_id', b.epic_id, 'via', b.via)
                   order by b.via desc, b.number)
    into v_blockers
    from (select d.*, 'story_dependency' as via
            from app.story_dependencies sd
            join app.stories d on d.tenant_id = sd.tenant_id and d.id = sd.depends_on_story_id
           where sd.tenant_id = s.tenant_id and sd.story_id = s.id
             and d.verified_status <> 'verified'
          union all
          select d.*, 'epic_dependency'
            from app.epic_dependencies ed
            join app.stories d on d.tenant_id = ed.tenant_id and d.epic_id = ed.depends_on_epic_id
           where ed.tenant_id = s.tenant_id and ed.epic_id = s.epic_id
             and d.verified_status <> 'verified') b;
  if v_blockers is not null then
    perform app.raise_error(409, 'dependencies_not_verified',
      format('%s prerequisite stor%s not verified yet', jsonb_array_length(v_blockers),
             case when jsonb_array_length(v_blockers) = 1 then 'y is' else 'ies are' end),
      jsonb_build_object('blockers', v_blockers));
  end if;
  perform app.assert_budget_allows(s.tenant_id, s.id, p_me.agent_id);
  perform set_config('loopctl.audit_action', 'story.claim', true);
  update app.stories set agent_status = 'assigned', assigned_agent_id = p_me.agent_id,
         implementer_root = p_me.lineage_root, claimed_at = now(), updated_at = now()
   where tenant_id = s.tenant_id and id = s.id
  returning * into n;
  perform app.story_events(s, n, p_me, 'claim', 'story.claimed',
    jsonb_build_object('assigned_agent_id', p_me.agent_id));
  return app.story_result(n);
end
$$;

create or replace function app.sm_start(p_me app.identity, p_story_id uuid)
returns jsonb language plpgsql volatile as $$
declare
  s app.stories;
  n app.stories;
begin
  perform app.require_role(p_me, array['agent', 'orchestrator', 'user'], 'start');
  perform app.require_agent_identity(p_me, 'start');
  s := app.lock_story(p_story_id);
  perform app.assert_custody_not_halted(s.tenant_id);
  if s.agent_status <> 'assigned' then
    perform app.invalid_transition(s, 'start');
  end if;
  perform app.require_assigned_agent(s, p_me, 'start');
  perform set_config('loopctl.audit_action', 'story.start', true);
  update app.stories set agent_status = 'implementing', started_at = now(), updated_at = now()
   where tenant_id = s.tenant_id and id = s.id
  returning * into n;
  perform app.story_events(s, n, p_me, 'start', 'story.started');
  return app.story_result(n);
end
$$;

create or replace function app.sm_request_review(p_me app.identity, p_story_id uuid)
returns jsonb language plpgsql volatile as $$
declare
  s app.stories;
  n app.stories;
begin
  perform app.require_role(p_me, array['agent', 'orchestrator', 'user'], 'request_review');
  perform app.require_agent_identity(p_me, 'request_review');
  s := app.lock_story(p_story_id);
  perform app.assert_custody_not_halted(s.tenant_id);
  if s.agent_status <> 'implementing' then
    perform app.invalid_transition(s, 'request_review');
  end if;
  perform app.require_assigned_agent(s, p_me, 'request_review');
  -- No status change; touching updated_at puts the request in the story's audit history.
  perform set_config('loopctl.audit_action', 'story.request_review', true);
  update app.stories set updated_at = now()
   where tenant_id = s.tenant_id and id = s.id
  returning * into n;
  perform app.story_events(s, n, p_me, 'request_review', 'story.review_requested');
  return app.story_result(n);
end
$$;

create or replace function app.sm_unclaim(p_me app.identity, p_story_id uuid)
returns jsonb language plpgsql volatile as $$
declare
  s app.stories;
  n app.stories;
begin
  perform app.require_role(p_me, array['agent', 'orchestrator', 'user'], 'unclaim');
  perform app.require_agent_identity(p_me, 'unclaim');
  s := app.lock_story(p_story_id);
  perform app.assert_custody_not_halted(s.tenant_id);
  if s.agent_status not in ('assigned', 'implementing') then
    perform app.invalid_transition(s, 'unclaim');
  end if;
  perform app.require_assigned_agent(s, p_me, 'unclaim');
  perform set_config('loopctl.audit_action', 'story.unclaim', true);
  update app.stories set agent_status = 'pending', assigned_agent_id = null,
         implementer_root = null, contracted_by_agent_id = null, updated_at = now()
   where tenant_id = s.tenant_id and id = s.id
  returning * into n;
  perform app.story_events(s, n, p_me, 'unclaim', 'story.unclaimed',
    jsonb_build_object('previous_agent_id', s.assigned_agent_id));
  return app.story_result(n);
end
$$;

create or replace function app.sm_report(p_me app.identity, p_story_id uuid,
                                         p_artifact jsonb, p_token_usage jsonb)
returns jsonb language plpgsql volatile as $$
declare
  s app.stories;
  n app.stories;
  v_code text;
  v_artifact_id uuid;
  v_type text;
  v_commit text;
  v_path text;
begin
  perform app.require_role(p_me, array['agent', 'orchestrator'], 'report');
  perform app.require_agent_identity(p_me, 'report');
  s := app.lock_story(p_story_id);
  perform app.assert_custody_not_halted(s.tenant_id);
  if s.agent_status <> 'implementing' then
    perform app.invalid_transition(s, 'report');
  end if;
  v_code := app.custody_gate(s, p_me, 'report');
  if v_code is not null then
    return app.record_custody_violation(s, p_me, 'report', v_code);
  end if;
  if p_artifact is not null and jsonb_typeof(p_artifact) <> 'null' then
    if jsonb_typeof(p_artifact) = 'object' then
      v_type := coalesce(p_artifact ->> 'artifact_type', p_artifact ->> 'type');
      v_commit := coalesce(p_artifact ->> 'commit_sha', p_artifact ->> 'commit');
      v_path := p_artifact ->> 'path';
    end if;
    if jsonb_typeof(p_artifact) <> 'object'
       or v_type is null or length(v_type) not between 1 and 100
       or coalesce(length(v_path), 0) > 2000
       or (v_commit is not null and v_commit !~ '^[0-9a-fA-F]{7,64}$')
       or jsonb_typeof(coalesce(p_artifact -> 'details', '{}')) <> 'object'
       or coalesce(pg_column_size(p_artifact -> 'details'), 0) > 65536 then
      perform app.raise_error(422, 'invalid_artifact',
        'artifact must be an object with type (1-100 chars), optional path, commit '
        '(7-64 hex digits) and details (an object)',
        jsonb_build_object('artifact', p_artifact));
    end if;
  end if;
  if p_token_usage is not null and jsonb_typeof(p_token_usage) <> 'object' then
    perform app.raise_error(422, 'invalid_token_usage', 'token_usage must be an object',
                            jsonb_build_object('token_usage', p_token_usage));
  end if;
  perform set_config('loopctl.audit_action', 'story.report', true);
  update app.stories set agent_status = 'reported_done', reported_by_agent_id = p_me.agent_id,
         reported_done_at = now(), updated_at = now()
   where tenant_id = s.tenant_id and id = s.id
  returning * into n;
  if v_type is not null then
    insert into app.artifacts (tenant_id, story_id, artifact_type, path, commit_sha, details,
                               reported_by_agent_id, reported_by_key_id)
    values (s.tenant_id, s.id, v_type, v_path, v_commit,
            coalesce(p_artifact -> 'details', '{}'::jsonb), p_me.agent_id, p_me.key_id)
    returning id into v_artifact_id;
  end if;
  if p_token_usage is not null then
    perform app.record_token_usage(s.id, p_token_usage);
  end if;
  perform app.story_events(s, n, p_me, 'report', 'story.reported',
    jsonb_build_object('reported_by_agent_id', p_me.agent_id,
                       'implementer_agent_id', s.assigned_agent_id,
                       'artifact_id', v_artifact_id));
  return app.story_result(n) || jsonb_build_object('artifact_id', v_artifact_id);
end
$$;

create or replace function app.sm_review_complete(
  p_me app.identity, p_story_id uuid, p_review_type text, p_findings_count int,
  p_fixes_count int, p_disproved_count int, p_summary text, p_findings jsonb
) returns jsonb language plpgsql volatile as $$
declare
  s app.stories;
  n app.stories;
  r app.reviews;
  v_code text;
begin
  perform app.require_role(p_me, array['orchestrator', 'user'], 'review_complete');
  s := app.lock_story(p_story_id);
  perform app.assert_custody_not_halted(s.tenant_id);
  if s.agent_status <> 'reported_done' or s.verified_status = 'verified' then
    perform app.invalid_transition(s, 'review_complete');
  end if;
  v_code := app.custody_gate(s, p_me, 'review_complete');
  if v_code is not null then
    return app.record_custody_violation(s, p_me, 'review_complete', v_code);
  end if;
  perform app.require_text(p_review_type, 'review_type', 100);
  if coalesce(p_findings_count, -1) < 0 or coalesce(p_fixes_count, -1) < 0
     or coalesce(p_disproved_count, -1) < 0 then
    perform app.raise_error(422, 'invalid_input',
      'findings_count, fixes_count and disproved_count must be non-negative integers',
      jsonb_build_object('findings_count', p_findings_count, 'fixes_count', p_fixes_count,
                         'disproved_count', p_disproved_count));
  end if;
  if coalesce(length(p_summary), 0) > 50000 then
    perform app.raise_error(422, 'invalid_input', 'summary is at most 50000 characters',
                            jsonb_build_object('field', 'summary', 'max_length', 50000));
  end if;
  if jsonb_typeof(coalesce(p_findings, '[]')) <> 'array'
     or coalesce(pg_column_size(p_findings), 0) > 1048576 then
    perform app.raise_error(422, 'invalid_input', 'findings must be a JSON array (at most 1 MB)',
                            jsonb_build_object('field', 'findings'));
  end if;
  -- Set before the first write, so the review/result rows carry the action too.
  perform set_config('loopctl.audit_action', 'story.review_complete', true);
  insert into app.reviews (tenant_id, story_id, reviewer_agent_id, reviewer_key_id, review_type,
                           findings_count, fixes_count, disproved_count, summary, findings)
  values (s.tenant_id, s.id, p_me.agent_id, p_me.key_id, p_review_type, p_findings_count,
          p_fixes_count, p_disproved_count, p_summary, coalesce(p_findings, '[]'))
  returning * into r;
  update app.stories set updated_at = now()
   where tenant_id = s.tenant_id and id = s.id
  returning * into n;
  perform app.story_events(s, n, p_me, 'review_complete', 'story.review_completed',
    jsonb_build_object('review_id', r.id, 'review_type', r.review_type,
                       'findings_count', r.findings_count, 'fixes_count', r.fixes_count,
                       'disproved_count', r.disproved_count));
  return app.story_result(n) || jsonb_build_object('review', to_jsonb(r));
end
$$;

-- p_check_epic = false lets bulk paths run the epic-completion check once, after every
-- story lock of the call is taken.
create or replace function app.sm_verify(p_me app.identity, p_story_id uuid, p_result text,
                                         p_summary text, p_review_type text,
                                         p_check_epic boolean default true)
returns jsonb language plpgsql volatile as $$
declare
  s app.stories;
  n app.stories;
  v_code text;
  v_iteration int;
  v_review_id uuid;
  v_epic_completed boolean := false;
begin
  perform app.require_role(p_me, array['orchestrator'], 'verify');
  perform app.require_agent_identity(p_me, 'verify');
  s := app.lock_story(p_story_id);
  perform app.assert_custody_not_halted(s.tenant_id);
  if s.agent_status <> 'reported_done' or s.verified_status = 'verified' then
    perform app.invalid_transition(s, 'verify');
  end if;
  v_code := app.custody_gate(s, p_me, 'verify');
  if v_code is not null then
    return app.record_custody_violation(s, p_me, 'verify', v_code);
  end if;
  if p_result is null or p_result not in ('pass', 'partial') then
    perform app.raise_error(422, 'invalid_result', 'result must be pass or partial',
      jsonb_build_object('result', p_result, 'allowed', jsonb_build_array('pass', 'partial')),
      'use reject to fail a story');
  end if;
  if coalesce(length(p_summary), 0) > 50000 or coalesce(length(p_review_type), 0) > 100 then
    perform app.raise_error(422, 'invalid_input',
      'summary is at most 50000 and review_type at most 100 characters', null);
  end if;
  -- A review completed since the story was (last) reported done, and since any rejection.
  select id into v_review_id from app.reviews
   where tenant_id = s.tenant_id and story_id = s.id
     and completed_at >= s.reported_done_at
     and (s.rejected_at is null or completed_at >= s.rejected_at)
   order by completed_at desc limit 1;
  if v_review_id is null then
    perform app.raise_error(422, 'review_not_conducted',
      'a review must be completed after the story was reported done before it is verified',
      jsonb_build_object('reported_done_at', s.reported_done_at,
                         'rejected_at', s.rejected_at),
      'call review_complete first');
  end if;
  select coalesce(max(iteration), 0) + 1 into v_iteration from app.verification_results
   where tenant_id = s.tenant_id and story_id = s.id;
  -- Set before the first write, so the review/result rows carry the action too.
  perform set_config('loopctl.audit_action', 'story.verify', true);
  insert into app.verification_results (tenant_id, story_id, iteration, result, summary,
                                        review_type, verifier_agent_id, verifier_key_id)
  values (s.tenant_id, s.id, v_iteration, p_result, p_summary, p_review_type, p_me.agent_id,
          p_me.key_id);
  update app.stories set verified_status = 'verified', verified_by_agent_id = p_me.agent_id,
         verified_at = now(), updated_at = now()
   where tenant_id = s.tenant_id and id = s.id
  returning * into n;
  perform app.story_events(s, n, p_me, 'verify', 'story.verified',
    jsonb_build_object('result', p_result, 'iteration', v_iteration, 'review_id', v_review_id,
                       'verified_by_agent_id', p_me.agent_id));
  if p_check_epic then
    v_epic_completed := app.check_epic_completed(n.tenant_id, n.epic_id);
  end if;
  return app.story_result(n) || jsonb_build_object('iteration', v_iteration,
                                                   'epic_completed', v_epic_completed);
end
$$;

create or replace function app.sm_reject(p_me app.identity, p_story_id uuid, p_reason text,
                                         p_findings jsonb)
returns jsonb language plpgsql volatile as $$
declare
  s app.stories;
  n app.stories;
  v_code text;
  v_iteration int;
  v_auto_reset boolean;
begin
  perform app.require_role(p_me, array['orchestrator', 'user'], 'reject');
  s := app.lock_story(p_story_id);
  perform app.assert_custody_not_halted(s.tenant_id);
  if s.agent_status <> 'reported_done' and s.verified_status <> 'verified' then
    perform app.invalid_transition(s, 'reject');
  end if;
  v_code := app.custody_gate(s, p_me, 'reject');
  if v_code is not null then
    return app.record_custody_violation(s, p_me, 'reject', v_code);
  end if;
  perform app.require_text(p_reason, 'reason', 50000);
  if p_findings is not null and jsonb_typeof(p_findings) not in ('array', 'object', 'null') then
    perform app.raise_error(422, 'invalid_input', 'findings must be a JSON array or object',
                            jsonb_build_object('field', 'findings'));
  end if;
  begin
    v_auto_reset := coalesce(
      (app.tenant_settings(s.tenant_id) ->> 'auto_reset_on_reject')::boolean, true);
  exception when invalid_text_representation then
    v_auto_reset := true;  -- a malformed setting falls back to the default
  end;
  select coalesce(max(iteration), 0) + 1 into v_iteration from app.verification_results
   where tenant_id = s.tenant_id and story_id = s.id;
  perform set_config('loopctl.audit_action', 'story.reject', true);
  insert into app.verification_results (tenant_id, story_id, iteration, result, summary,
                                        findings, verifier_agent_id, verifier_key_id)
  values (s.tenant_id, s.id, v_iteration, 'reject', p_reason,
          case when jsonb_typeof(p_findings) = 'array' then p_findings
               when jsonb_typeof(p_findings) = 'object' then jsonb_build_array(p_findings)
               else '[]'::jsonb end,
          p_me.agent_id, p_me.key_id);
  update app.stories set verified_status = 'rejected', rejected_at = now(), updated_at = now(),
         agent_status = case when v_auto_reset then 'pending' else agent_status end,
         assigned_agent_id = case when v_auto_reset then null else assigned_agent_id end,
         implementer_root = case when v_auto_reset then null else implementer_root end,
         contracted_by_agent_id = case when v_auto_reset then null
                                       else contracted_by_agent_id end
   where tenant_id = s.tenant_id and id = s.id
  returning * into n;
  perform app.story_events(s, n, p_me, 'reject', 'story.rejected',
    jsonb_build_object('reason', p_reason, 'iteration', v_iteration,
                       'auto_reset', v_auto_reset));
  if v_auto_reset then
    perform app.emit_event(n.tenant_id, 'story.auto_reset',
      jsonb_build_object('story_id', n.id, 'number', n.number, 'project_id', n.project_id,
                         'epic_id', n.epic_id, 'previous_agent_id', s.assigned_agent_id),
      n.project_id, 'story', n.id);
  end if;
  return app.story_result(n) || jsonb_build_object('iteration', v_iteration,
                                                   'auto_reset', v_auto_reset);
end
$$;

create or replace function app.sm_force_unclaim(p_me app.identity, p_story_id uuid)
returns jsonb language plpgsql volatile as $$
declare
  s app.stories;
  n app.stories;
begin
  perform app.require_role(p_me, array['orchestrator', 'user'], 'force_unclaim');
  s := app.lock_story(p_story_id);
  perform app.assert_custody_not_halted(s.tenant_id);
  if s.agent_status = 'pending' then
    perform app.invalid_transition(s, 'force_unclaim');
  end if;
  perform set_config('loopctl.audit_action', 'story.force_unclaim', true);
  update app.stories set agent_status = 'pending', assigned_agent_id = null,
         implementer_root = null, contracted_by_agent_id = null, updated_at = now()
   where tenant_id = s.tenant_id and id = s.id
  returning * into n;
  perform app.story_events(s, n, p_me, 'force_unclaim', 'story.force_unclaimed',
    jsonb_build_object('previous_agent_id', s.assigned_agent_id));
  return app.story_result(n);
end
$$;

create or replace function app.sm_backfill(p_me app.identity, p_story_id uuid, p_reason text,
                                           p_evidence_url text)
returns jsonb language plpgsql volatile as $$
declare
  s app.stories;
  n app.stories;
  v_code text;
  v_iteration int;
  v_epic_completed boolean;
begin
  perform app.require_role(p_me, array['orchestrator', 'user'], 'backfill');
  s := app.lock_story(p_story_id);
  perform app.assert_custody_not_halted(s.tenant_id);
  -- The state rule of backfill (never claimed or started) is itself a custody gate: a
  -- refused backfill is recorded as an attempted violation.
  v_code := app.custody_gate(s, p_me, 'backfill');
  if v_code is not null then
    return app.record_custody_violation(s, p_me, 'backfill', v_code);
  end if;
  perform app.require_text(p_reason, 'reason', 5000);
  if p_evidence_url is not null
     and (length(p_evidence_url) > 2000 or p_evidence_url !~ '^https?://\S+$') then
    perform app.raise_error(422, 'invalid_input', 'evidence_url must be an http(s) URL',
                            jsonb_build_object('field', 'evidence_url'));
  end if;
  select coalesce(max(iteration), 0) + 1 into v_iteration from app.verification_results
   where tenant_id = s.tenant_id and story_id = s.id;
  insert into app.verification_results (tenant_id, story_id, iteration, result, summary,
                                        review_type, verifier_agent_id, verifier_key_id)
  values (s.tenant_id, s.id, v_iteration, 'pass', 'backfill: ' || p_reason, 'backfill',
          p_me.agent_id, p_me.key_id);
  perform set_config('loopctl.audit_action', 'story.backfill', true);
  update app.stories set agent_status = 'reported_done', verified_status = 'verified',
         backfill_reason = p_reason, backfill_evidence_url = p_evidence_url,
         reported_done_at = now(), verified_at = now(), verified_by_agent_id = p_me.agent_id,
         updated_at = now()
   where tenant_id = s.tenant_id and id = s.id
  returning * into n;
  perform app.story_events(s, n, p_me, 'backfill', 'story.backfilled',
    jsonb_build_object('reason', p_reason, 'evidence_url', p_evidence_url));
  v_epic_completed := app.check_epic_completed(n.tenant_id, n.epic_id);
  return app.story_result(n) || jsonb_build_object('epic_completed', v_epic_completed);
end
$$;

-- Single actions: a returned violation becomes the HTTP error (response.status), the
-- transaction still commits so the violation row is kept.
create or replace function app.sm_respond(p_result jsonb) returns jsonb
language plpgsql volatile as $$
begin
  if p_result ? 'error' then
    return app.error_response((p_result ->> 'status')::int, p_result -> 'error' ->> 'code',
                              p_result -> 'error' ->> 'message', p_result -> 'error' -> 'details',
                              p_result -> 'error' ->> 'hint');
  end if;
  return p_result;
end
$$;

-- ---------------------------------------------------------------------------------------
-- Bulk: every item goes through the same app.sm_* function in its own subtransaction.
-- Items are processed in story-id order (lock ordering: two bulk calls cannot deadlock on
-- each other's stories) and reported in input order.
-- ---------------------------------------------------------------------------------------
create or replace function app.sm_bulk(p_me app.identity, p_action text, p_story_ids uuid[],
                                       p_args jsonb)
returns jsonb language plpgsql volatile as $$
declare
  v_item record;
  r jsonb;
  v_results jsonb := '{}'::jsonb;   -- ordinal -> item result
  v_epics uuid[] := array[]::uuid[];
  v_epic uuid;
  v_msg text;
  v_detail text;
  v_state text;
  v_ok int := 0;
  v_failed int := 0;
  v_out jsonb;
begin
  if p_story_ids is null or cardinality(p_story_ids) = 0 or cardinality(p_story_ids) > 50 then
    perform app.raise_error(422, 'invalid_bulk_request',
      'story_ids must hold 1 to 50 story ids',
      jsonb_build_object('count', coalesce(cardinality(p_story_ids), 0), 'max', 50));
  end if;
  for v_item in
    select u.id, u.ord from unnest(p_story_ids) with ordinality as u(id, ord)
     order by u.id nulls last, u.ord
  loop
    begin
      r := case p_action
             when 'claim' then app.sm_claim(p_me, v_item.id)
             when 'verify' then app.sm_verify(p_me, v_item.id, p_args ->> 'result',
                                              p_args ->> 'summary', p_args ->> 'review_type',
                                              false)
             when 'reject' then app.sm_reject(p_me, v_item.id, p_args ->> 'reason', null)
           end;
      if r ? 'error' then
        -- A gate violation: its record was written and is kept (nothing was raised, so
        -- this subtransaction commits with the violation row and nothing else).
        v_out := jsonb_build_object('story_id', v_item.id, 'ok', false,
                                    'status', (r ->> 'status')::int, 'error', r -> 'error');
      else
        v_out := jsonb_build_object('story_id', v_item.id, 'ok', true, 'status', 200,
                                    'story', r -> 'story', 'next_actions', r -> 'next_actions');
        if p_action = 'verify' then
          v_epics := v_epics || (r -> 'story' ->> 'epic_id')::uuid;
        end if;
      end if;
    exception
      when sqlstate 'PGRST' then
        get stacked diagnostics v_msg = message_text, v_detail = pg_exception_detail;
        v_out := jsonb_build_object('story_id', v_item.id, 'ok', false,
                                    'status', (v_detail::jsonb ->> 'status')::int,
                                    'error', v_msg::jsonb);
      when others then
        get stacked diagnostics v_msg = message_text, v_state = returned_sqlstate;
        v_out := jsonb_build_object('story_id', v_item.id, 'ok', false, 'status', 500,
          'error', jsonb_build_object('code', 'internal_error', 'message', v_msg,
                                      'details', jsonb_build_object('sqlstate', v_state)));
    end;
    if (v_out ->> 'ok')::boolean then v_ok := v_ok + 1; else v_failed := v_failed + 1; end if;
    v_results := v_results || jsonb_build_object(v_item.ord::text, v_out);
  end loop;
  for v_epic in select distinct e from unnest(v_epics) e order by e loop
    perform app.check_epic_completed(p_me.tenant_id, v_epic);
  end loop;
  return jsonb_build_object(
    'results', (select jsonb_agg(v_results -> (o::text) order by o)
                  from generate_series(1, cardinality(p_story_ids)) o),
    'succeeded', v_ok, 'failed', v_failed);
end
$$;

-- ---------------------------------------------------------------------------------------
-- The API (security definer, owned by loopctl_owner). Argument names are the HTTP/MCP
-- field names.
-- ---------------------------------------------------------------------------------------

create or replace function api.contract_story(story_id uuid, story_title text, ac_count int)
returns jsonb language plpgsql volatile security definer
set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  return app.sm_respond(app.sm_contract(v_me, contract_story.story_id, story_title, ac_count));
end
$$;

create or replace function api.claim_story(story_id uuid)
returns jsonb language plpgsql volatile security definer
set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  return app.sm_respond(app.sm_claim(v_me, claim_story.story_id));
end
$$;

create or replace function api.start_story(story_id uuid)
returns jsonb language plpgsql volatile security definer
set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  return app.sm_respond(app.sm_start(v_me, start_story.story_id));
end
$$;

create or replace function api.request_review(story_id uuid)
returns jsonb language plpgsql volatile security definer
set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  return app.sm_respond(app.sm_request_review(v_me, request_review.story_id));
end
$$;

create or replace function api.unclaim_story(story_id uuid)
returns jsonb language plpgsql volatile security definer
set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  return app.sm_respond(app.sm_unclaim(v_me, unclaim_story.story_id));
end
$$;

create or replace function api.report_story(story_id uuid, artifact jsonb default null,
                                            token_usage jsonb default null)
returns jsonb language plpgsql volatile security definer
set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  return app.sm_respond(app.sm_report(v_me, report_story.story_id, artifact, token_usage));
end
$$;

create or replace function api.review_complete(
  story_id uuid, review_type text, findings_count int default 0, fixes_count int default 0,
  disproved_count int default 0, summary text default null, findings jsonb default '[]'
) returns jsonb language plpgsql volatile security definer
set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
  r jsonb;
begin
  r := app.sm_respond(app.sm_review_complete(v_me, review_complete.story_id, review_type,
         findings_count, fixes_count, disproved_count, summary, findings));
  if r ? 'review' then
    perform set_config('response.status', '201', true);  -- a review record was created
  end if;
  return r;
end
$$;

create or replace function api.verify_story(story_id uuid, result text,
                                            summary text default null,
                                            review_type text default null)
returns jsonb language plpgsql volatile security definer
set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  return app.sm_respond(app.sm_verify(v_me, verify_story.story_id, result, summary,
                                      review_type));
end
$$;

create or replace function api.reject_story(story_id uuid, reason text,
                                            findings jsonb default null)
returns jsonb language plpgsql volatile security definer
set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  return app.sm_respond(app.sm_reject(v_me, reject_story.story_id, reason, findings));
end
$$;

create or replace function api.force_unclaim_story(story_id uuid)
returns jsonb language plpgsql volatile security definer
set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  return app.sm_respond(app.sm_force_unclaim(v_me, force_unclaim_story.story_id));
end
$$;

create or replace function api.backfill_story(story_id uuid, reason text,
                                              evidence_url text default null)
returns jsonb language plpgsql volatile security definer
set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  return app.sm_respond(app.sm_backfill(v_me, backfill_story.story_id, reason, evidence_url));
end
$$;

create or replace function api.bulk_claim(story_ids uuid[])
returns jsonb language plpgsql volatile security definer
set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  perform app.require_role(v_me, array['agent'], 'bulk_claim');
  perform app.require_agent_identity(v_me, 'bulk_claim');
  return app.sm_bulk(v_me, 'claim', story_ids, '{}'::jsonb);
end
$$;

create or replace function api.bulk_verify(story_ids uuid[], result text default 'pass',
                                           summary text default null,
                                           review_type text default null)
returns jsonb language plpgsql volatile security definer
set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  perform app.require_role(v_me, array['orchestrator'], 'bulk_verify');
  perform app.require_agent_identity(v_me, 'bulk_verify');
  return app.sm_bulk(v_me, 'verify', story_ids, jsonb_build_object(
    'result', result, 'summary', summary, 'review_type', review_type));
end
$$;

create or replace function api.bulk_reject(story_ids uuid[], reason text)
returns jsonb language plpgsql volatile security definer
set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  perform app.require_role(v_me, array['orchestrator', 'user'], 'bulk_reject');
  return app.sm_bulk(v_me, 'reject', story_ids, jsonb_build_object('reason', reason));
end
$$;

-- Verifies every story of the epic that awaits verification (reported done, not verified).
create or replace function api.verify_all_in_epic(epic_id uuid, summary text default null,
                                                  review_type text default null)
returns jsonb language plpgsql volatile security definer
set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
  v_ids uuid[];
begin
  perform app.require_role(v_me, array['orchestrator'], 'verify_all_in_epic');
  perform app.require_agent_identity(v_me, 'verify_all_in_epic');
  if not exists (select 1 from app.epics e
                  where e.tenant_id = v_me.tenant_id and e.id = verify_all_in_epic.epic_id) then
    perform app.raise_error(404, 'epic_not_found', 'epic not found',
                            jsonb_build_object('epic_id', verify_all_in_epic.epic_id));
  end if;
  select coalesce(array_agg(s.id order by s.number), array[]::uuid[]) into v_ids
    from app.stories s
   where s.tenant_id = v_me.tenant_id and s.epic_id = verify_all_in_epic.epic_id
     and s.agent_status = 'reported_done' and s.verified_status <> 'verified';
  if cardinality(v_ids) = 0 then
    return jsonb_build_object('epic_id', verify_all_in_epic.epic_id, 'results', '[]'::jsonb,
                              'succeeded', 0, 'failed', 0);
  end if;
  return jsonb_build_object('epic_id', verify_all_in_epic.epic_id)
      || app.sm_bulk(v_me, 'verify', v_ids, jsonb_build_object(
           'result', 'pass', 'summary', summary, 'review_type', review_type));
end
$$;

reset role;
