-- Token usage, corrections, soft deletes, anomalies, analytics views and skills (SPEC §8).
--
-- One write path (app.write_usage) serves api.report_token_usage, api.correct_token_usage
-- and app.record_token_usage (called by api.report_story): validate, insert, apply the
-- delta to app.cost_totals, evaluate budgets, detect anomalies — all in the caller's
-- transaction, so a refused report leaves nothing behind.
set role loopctl_owner;

-- Running totals and fired-event flags are derived bookkeeping (the usage rows themselves
-- are audited): keep them out of the audit trail (functions/audit.sql honours the marker).
comment on table app.cost_totals is
  'running effective usage totals per scope, derived from token_usage_reports [no-audit]';
comment on table app.budget_alerts is
  'budget events already fired (exactly-once gate); the events themselves are in app.events [no-audit]';

-- Effective usage: the latest row of every correction chain, unless that row was deleted.
create or replace view app.effective_token_usage with (security_invoker = true) as
select r.*
  from app.token_usage_reports r
 where r.deleted_at is null
   and not exists (select 1 from app.token_usage_reports c
                    where c.tenant_id = r.tenant_id and c.corrects_id = r.id);

create or replace function app.usage_json(r app.token_usage_reports) returns jsonb
language sql stable as $$
  select jsonb_build_object(
    'id', r.id, 'story_id', r.story_id, 'project_id', r.project_id, 'epic_id', r.epic_id,
    'agent_id', r.agent_id, 'key_id', r.key_id, 'input_tokens', r.input_tokens,
    'output_tokens', r.output_tokens, 'total_tokens', r.total_tokens,
    'model_name', r.model_name, 'cost_millicents', r.cost_millicents, 'phase', r.phase,
    'session_id', r.session_id, 'skill_version_id', r.skill_version_id,
    'tool_call_count', r.tool_call_count, 'tests_run_count', r.tests_run_count,
    'metadata', r.metadata, 'corrects_id', r.corrects_id, 'root_id', r.root_id,
    'deleted_at', r.deleted_at, 'deleted_by_key_id', r.deleted_by_key_id,
    'created_at', r.created_at)
$$;

-- 422 naming the field.
create or replace function app.usage_invalid(p_field text, p_value jsonb, p_reason text)
returns void language plpgsql stable as $$
begin
  perform app.raise_error(422, 'invalid_token_usage',
    format('token usage field %s %s', p_field, p_reason),
    jsonb_build_object('field', p_field, 'value', p_value, 'reason', p_reason));
end
$$;

-- A whole number in [0, p_max] from p_usage ->> p_field, or null when absent/null.
create or replace function app.usage_count(p_usage jsonb, p_field text, p_max bigint,
                                           p_required boolean)
returns bigint language plpgsql stable as $$
declare
  v jsonb := p_usage -> p_field;
  n numeric;
begin
  if v is null or jsonb_typeof(v) = 'null' then
    if p_required then
      perform app.usage_invalid(p_field, null, 'is required');
    end if;
    return null;
  end if;
  if jsonb_typeof(v) <> 'number' then
    perform app.usage_invalid(p_field, v, 'must be a whole number');
  end if;
  n := v::text::numeric;
  if n <> trunc(n) then
    perform app.usage_invalid(p_field, v, 'must be a whole number');
  elsif n < 0 then
    perform app.usage_invalid(p_field, v, 'must not be negative');
  elsif n > p_max then
    perform app.usage_invalid(p_field, v, format('is implausibly large (at most %s)', p_max));
  end if;
  return n::bigint;
end
$$;

create or replace function app.usage_text(p_usage jsonb, p_field text, p_max integer,
                                          p_required boolean, p_pattern text default null)
returns text language plpgsql stable as $$
declare
  v jsonb := p_usage -> p_field;
  t text;
begin
  if v is null or jsonb_typeof(v) = 'null' then
    if p_required then
      perform app.usage_invalid(p_field, null, 'is required');
    end if;
    return null;
  end if;
  if jsonb_typeof(v) <> 'string' then
    perform app.usage_invalid(p_field, v, 'must be a string');
  end if;
  t := v #>> '{}';
  if length(t) = 0 or length(t) > p_max then
    perform app.usage_invalid(p_field, to_jsonb(left(t, 120)),
                              format('must be 1 to %s characters', p_max));
  end if;
  if p_pattern is not null and t !~ p_pattern then
    perform app.usage_invalid(p_field, v, format('must match %s', p_pattern));
  end if;
  return t;
end
$$;

-- Validates a usage payload (the body of POST /token-usage without story_id, or a report's
-- token_usage). For a correction, p_base supplies the fields the payload leaves out.
-- Returns a row with the validated fields (ids and chain columns left for the caller).
create or replace function app.validate_usage(p_tenant_id uuid, p_usage jsonb,
                                              p_base app.token_usage_reports default null)
returns app.token_usage_reports
language plpgsql stable as $$
declare
  r app.token_usage_reports;
  v_unknown text[];
  v_required boolean := p_base.id is null;
  v_svid text;
begin
  if p_usage is null or jsonb_typeof(p_usage) <> 'object' then
    perform app.raise_error(422, 'invalid_token_usage', 'token usage must be a JSON object',
                            jsonb_build_object('value_type', jsonb_typeof(p_usage)));
  end if;
  if length(p_usage::text) > 20000 then
    perform app.raise_error(422, 'token_usage_too_large',
      'token usage payload is too large (at most 20000 characters, metadata at most 16000)',
      jsonb_build_object('size', length(p_usage::text)));
  end if;
  select array_agg(k order by k) into v_unknown
    from jsonb_object_keys(p_usage) k
   where k not in ('story_id', 'input_tokens', 'output_tokens', 'model_name',
                   'cost_millicents', 'phase', 'session_id', 'skill_version_id',
                   'tool_call_count', 'tests_run_count', 'metadata');
  if v_unknown is not null then
    perform app.raise_error(422, 'invalid_token_usage',
      format('unknown token usage field(s): %s (the agent comes from the API key)',
             array_to_string(v_unknown, ', ')),
      jsonb_build_object('unknown_fields', to_jsonb(v_unknown)));
  end if;

  r := p_base;
  r.input_tokens := coalesce(app.usage_count(p_usage, 'input_tokens', 100000000, v_required),
                             r.input_tokens);
  r.output_tokens := coalesce(app.usage_count(p_usage, 'output_tokens', 100000000, v_required),
                              r.output_tokens);
  r.cost_millicents := coalesce(
    app.usage_count(p_usage, 'cost_millicents', 100000000000, v_required), r.cost_millicents);
  r.model_name := coalesce(app.usage_text(p_usage, 'model_name', 100, v_required,
                                          '^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$'), r.model_name);
  r.phase := coalesce(app.usage_text(p_usage, 'phase', 100, false), r.phase);
  r.session_id := coalesce(app.usage_text(p_usage, 'session_id', 200, false), r.session_id);
  r.tool_call_count := coalesce(app.usage_count(p_usage, 'tool_call_count', 1000000, false),
                                r.tool_call_count);
  r.tests_run_count := coalesce(app.usage_count(p_usage, 'tests_run_count', 1000000, false),
                                r.tests_run_count);
  if p_usage ? 'metadata' and jsonb_typeof(p_usage -> 'metadata') <> 'null' then
    if jsonb_typeof(p_usage -> 'metadata') <> 'object' then
      perform app.usage_invalid('metadata', null, 'must be a JSON object');
    elsif length((p_usage -> 'metadata')::text) > 16000 then
      perform app.raise_error(422, 'token_usage_too_large',
        'token usage metadata is too large (at most 16000 characters)',
        jsonb_build_object('field', 'metadata', 'size', length((p_usage -> 'metadata')::text)));
    end if;
    r.metadata := p_usage -> 'metadata';
  end if;
  r.metadata := coalesce(r.metadata, '{}'::jsonb);

  v_svid := app.usage_text(p_usage, 'skill_version_id', 36, false);
  if v_svid is not null then
    if v_svid !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
      perform app.usage_invalid('skill_version_id', to_jsonb(v_svid), 'must be a UUID');
    end if;
    r.skill_version_id := v_svid::uuid;
    if not exists (select 1 from app.skill_versions sv
                    where sv.tenant_id = p_tenant_id and sv.id = r.skill_version_id) then
      perform app.raise_error(404, 'skill_version_not_found',
        format('skill version %s not found', v_svid),
        jsonb_build_object('skill_version_id', v_svid));
    end if;
  end if;
  return r;
end
$$;

-- Adds a usage delta to the running totals of the story, its epic, its project and the
-- agent, in that fixed order (concurrent writers lock rows in the same order: no deadlock).
create or replace function app.apply_usage_delta(
  p_tenant_id uuid, p_story_id uuid, p_epic_id uuid, p_project_id uuid, p_agent_id uuid,
  p_tokens bigint, p_millicents bigint, p_reports integer
) returns void
language sql volatile as $$
  insert into app.cost_totals as t (tenant_id, scope_type, scope_id, tokens, cost_millicents,
                                    reports)
  select p_tenant_id, v.scope_type, v.scope_id, p_tokens, p_millicents, p_reports
    from (values (1, 'story', p_story_id), (2, 'epic', p_epic_id),
                 (3, 'project', p_project_id), (4, 'agent', p_agent_id)) v(ord, scope_type, scope_id)
   order by v.ord
  on conflict (tenant_id, scope_type, scope_id) do update
     set tokens = t.tokens + excluded.tokens,
         cost_millicents = t.cost_millicents + excluded.cost_millicents,
         reports = t.reports + excluded.reports,
         updated_at = now()
$$;

-- Anomaly parameters (documented in the README): robust z = 0.6745·(x − median)/MAD over the
-- story totals of its peers (other stories with usage in the same epic; the project when the
-- epic has fewer than the minimum), flagged at |z| > 3.5 and at least 1.5× (high) or at most
-- 0.5× (low) the median, with at least 5 peers. When MAD is 0 the mean absolute deviation
-- (×1.2533) is the scale; when that is 0 too, the ratio rule alone decides.
create or replace function app.cost_anomaly_params() returns jsonb
language sql immutable as $$
  select jsonb_build_object('min_peers', 5, 'z_threshold', 3.5, 'high_ratio', 1.5,
                            'low_ratio', 0.5)
$$;

-- Checks one story against its peers and opens at most one anomaly per type; returns the
-- anomalies opened now.
create or replace function app.detect_cost_anomalies(p_tenant_id uuid, p_story_id uuid)
returns jsonb
language plpgsql volatile as $$
declare
  p jsonb := app.cost_anomaly_params();
  s record;
  v_x bigint;
  v_scope text;
  v_n integer;
  v_median numeric;
  v_mad numeric;
  v_meanad numeric;
  v_z numeric;
  v_type text;
  v_id uuid;
begin
  select st.id, st.project_id, st.epic_id, st.agent_status, t.cost_millicents, t.reports
    into s
    from app.stories st
    left join app.cost_totals t
      on t.tenant_id = st.tenant_id and t.scope_type = 'story' and t.scope_id = st.id
   where st.tenant_id = p_tenant_id and st.id = p_story_id;
  if not found or coalesce(s.reports, 0) = 0 then
    return '[]'::jsonb;
  end if;
  v_x := s.cost_millicents;

  foreach v_scope in array array['epic', 'project'] loop
    with peers as (
      select t.cost_millicents::numeric as x
        from app.stories st
        join app.cost_totals t
          on t.tenant_id = st.tenant_id and t.scope_type = 'story' and t.scope_id = st.id
       where st.tenant_id = p_tenant_id and st.id <> p_story_id and t.reports > 0
         and case v_scope when 'epic' then st.epic_id = s.epic_id
                          else st.project_id = s.project_id end
    ), m as (
      select count(*)::int as n, percentile_cont(0.5) within group (order by x) as med
        from peers
    )
    select m.n, m.med,
           (select percentile_cont(0.5) within group (order by abs(x - m.med)) from peers),
           (select avg(abs(x - m.med)) from peers)
      into v_n, v_median, v_mad, v_meanad
      from m;
    exit when v_n >= (p ->> 'min_peers')::int;
  end loop;
  if v_n < (p ->> 'min_peers')::int then
    return '[]'::jsonb;
  end if;

  v_z := case when v_mad > 0 then 0.6745 * (v_x - v_median) / v_mad
              when v_meanad > 0 then (v_x - v_median) / (1.2533 * v_meanad)
              else null end;
  if v_x > v_median and v_x >= (p ->> 'high_ratio')::numeric * v_median
     and (v_z is null or v_z > (p ->> 'z_threshold')::numeric) then
    v_type := 'high_cost';
  elsif s.agent_status = 'reported_done' and v_x < v_median
     and v_x <= (p ->> 'low_ratio')::numeric * v_median
     and (v_z is null or v_z < -(p ->> 'z_threshold')::numeric) then
    v_type := 'suspiciously_low';
  else
    return '[]'::jsonb;
  end if;

  insert into app.cost_anomalies (tenant_id, story_id, project_id, anomaly_type,
    observed_millicents, baseline_median, baseline_mad, robust_z, peer_scope, peer_count)
  values (p_tenant_id, p_story_id, s.project_id, v_type, v_x, v_median, v_mad,
          round(v_z, 4), v_scope, v_n)
  on conflict (tenant_id, story_id, anomaly_type) where resolved_at is null do nothing
  returning id into v_id;
  if v_id is null then
    return '[]'::jsonb;
  end if;
  perform app.emit_event(p_tenant_id, 'token.anomaly_detected',
    jsonb_build_object('anomaly_id', v_id, 'story_id', p_story_id, 'anomaly_type', v_type,
                       'observed_millicents', v_x, 'baseline_median', v_median,
                       'baseline_mad', v_mad, 'robust_z', round(v_z, 4),
                       'peer_scope', v_scope, 'peer_count', v_n),
    s.project_id, 'story', p_story_id);
  return jsonb_build_array(jsonb_build_object('id', v_id, 'anomaly_type', v_type,
                                              'robust_z', round(v_z, 4)));
end
$$;

-- The one write path. p_corrects: the row being corrected (null for a new report).
-- p_enforce_block: usage reports are refused by exhausted blocking budgets; corrections
-- and the usage carried by a completion report are records of spending already done.
create or replace function app.write_usage(
  p_me app.identity, p_story_id uuid, p_usage jsonb, p_enforce_block boolean,
  p_corrects app.token_usage_reports default null
) returns jsonb
language plpgsql volatile as $$
declare
  st record;
  r app.token_usage_reports;
  v_budgets jsonb;
  v_anomalies jsonb;
begin
  if p_me.agent_id is null and p_corrects.id is null then
    perform app.raise_error(403, 'agent_identity_required',
      'token usage is recorded against the reporting agent; this key has no agent identity',
      null, 'use a key bound to an agent (POST /agents/register)');
  end if;
  if p_story_id is null then
    perform app.usage_invalid('story_id', null, 'is required');
  end if;
  select s.id, s.project_id, s.epic_id into st
    from app.stories s where s.tenant_id = p_me.tenant_id and s.id = p_story_id;
  if not found then
    perform app.raise_error(404, 'story_not_found', format('story %s not found', p_story_id),
                            jsonb_build_object('story_id', p_story_id));
  end if;
  if p_usage ? 'story_id' and (p_usage ->> 'story_id') is distinct from p_story_id::text then
    perform app.usage_invalid('story_id', p_usage -> 'story_id',
                              'does not match the story being reported');
  end if;

  r := app.validate_usage(p_me.tenant_id, p_usage, p_corrects);
  r.tenant_id := p_me.tenant_id;
  r.id := gen_random_uuid();
  r.story_id := st.id;
  r.project_id := st.project_id;
  r.epic_id := st.epic_id;
  r.agent_id := coalesce(p_corrects.agent_id, p_me.agent_id);
  r.key_id := p_me.key_id;
  r.corrects_id := p_corrects.id;
  r.root_id := coalesce(p_corrects.root_id, r.id);
  r.deleted_at := null;
  r.deleted_by_key_id := null;

  insert into app.token_usage_reports (tenant_id, id, story_id, project_id, epic_id, agent_id,
    key_id, input_tokens, output_tokens, model_name, cost_millicents, phase, session_id,
    skill_version_id, tool_call_count, tests_run_count, metadata, corrects_id, root_id)
  values (r.tenant_id, r.id, r.story_id, r.project_id, r.epic_id, r.agent_id, r.key_id,
    r.input_tokens, r.output_tokens, r.model_name, r.cost_millicents, r.phase, r.session_id,
    r.skill_version_id, r.tool_call_count, r.tests_run_count, r.metadata, r.corrects_id,
    r.root_id)
  returning * into r;

  perform app.apply_usage_delta(r.tenant_id, r.story_id, r.epic_id, r.project_id, r.agent_id,
    r.total_tokens - coalesce(p_corrects.total_tokens, 0),
    r.cost_millicents - coalesce(p_corrects.cost_millicents, 0),
    case when p_corrects.id is null then 1 else 0 end);
  v_budgets := app.evaluate_budgets(r.tenant_id, r.story_id, r.epic_id, r.project_id,
    r.agent_id, r.total_tokens - coalesce(p_corrects.total_tokens, 0),
    r.cost_millicents - coalesce(p_corrects.cost_millicents, 0), p_enforce_block);
  v_anomalies := app.detect_cost_anomalies(r.tenant_id, r.story_id);
  return app.usage_json(r) || jsonb_build_object('budgets', v_budgets -> 'budgets',
    'budget_events', v_budgets -> 'events', 'anomalies', v_anomalies);
end
$$;

-- Called by api.report_story when the report carries token_usage: records it for the caller.
create or replace function app.record_token_usage(p_story_id uuid, p_usage jsonb)
returns jsonb
language plpgsql volatile as $$
begin
  return app.write_usage(app.require_identity(), p_story_id, p_usage, false);
end
$$;

create or replace function api.report_token_usage(
  story_id uuid, input_tokens bigint, output_tokens bigint, model_name text,
  cost_millicents bigint, phase text default null, session_id text default null,
  skill_version_id uuid default null, tool_call_count integer default null,
  tests_run_count integer default null, metadata jsonb default null
) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  p_story_id uuid := report_token_usage.story_id;
  p_input_tokens bigint := report_token_usage.input_tokens;
  p_output_tokens bigint := report_token_usage.output_tokens;
  p_model_name text := report_token_usage.model_name;
  p_cost_millicents bigint := report_token_usage.cost_millicents;
  p_phase text := report_token_usage.phase;
  p_session_id text := report_token_usage.session_id;
  p_skill_version_id uuid := report_token_usage.skill_version_id;
  p_tool_call_count integer := report_token_usage.tool_call_count;
  p_tests_run_count integer := report_token_usage.tests_run_count;
  p_metadata jsonb := report_token_usage.metadata;
  v_me app.identity := app.require_identity();
begin
  perform app.require_role(v_me, array['agent', 'orchestrator'], 'report_token_usage');
  return app.write_usage(v_me, p_story_id, jsonb_strip_nulls(jsonb_build_object(
    'input_tokens', p_input_tokens, 'output_tokens', p_output_tokens,
    'model_name', p_model_name, 'cost_millicents', p_cost_millicents, 'phase', p_phase,
    'session_id', p_session_id, 'skill_version_id', p_skill_version_id,
    'tool_call_count', p_tool_call_count, 'tests_run_count', p_tests_run_count))
    || case when p_metadata is null then '{}'::jsonb
            else jsonb_build_object('metadata', p_metadata) end,
    true);
end
$$;

-- A correction: a new row replacing the latest version of a report (fields left null keep
-- their values). The reporting agent, an orchestrator or a user may correct.
create or replace function api.correct_token_usage(
  report_id uuid, input_tokens bigint default null, output_tokens bigint default null,
  model_name text default null, cost_millicents bigint default null,
  phase text default null, session_id text default null,
  skill_version_id uuid default null, tool_call_count integer default null,
  tests_run_count integer default null, metadata jsonb default null,
  reason text default null
) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  p_report_id uuid := correct_token_usage.report_id;
  p_input_tokens bigint := correct_token_usage.input_tokens;
  p_output_tokens bigint := correct_token_usage.output_tokens;
  p_model_name text := correct_token_usage.model_name;
  p_cost_millicents bigint := correct_token_usage.cost_millicents;
  p_phase text := correct_token_usage.phase;
  p_session_id text := correct_token_usage.session_id;
  p_skill_version_id uuid := correct_token_usage.skill_version_id;
  p_tool_call_count integer := correct_token_usage.tool_call_count;
  p_tests_run_count integer := correct_token_usage.tests_run_count;
  p_metadata jsonb := correct_token_usage.metadata;
  p_reason text := correct_token_usage.reason;
  v_me app.identity := app.require_identity();
  v_old app.token_usage_reports;
  v_next uuid;
  v_usage jsonb;
begin
  perform app.require_role(v_me, array['agent', 'orchestrator', 'user'],
                           'correct_token_usage');
  select * into v_old from app.token_usage_reports
   where tenant_id = v_me.tenant_id and id = p_report_id for update;
  if not found then
    perform app.raise_error(404, 'token_usage_not_found',
      format('token usage report %s not found', p_report_id),
      jsonb_build_object('report_id', p_report_id));
  end if;
  if v_me.role = 'agent' and v_old.agent_id is distinct from v_me.agent_id then
    perform app.raise_error(403, 'not_report_owner',
      'an agent key may correct only its own agent''s usage reports',
      jsonb_build_object('report_id', p_report_id));
  end if;
  if v_old.deleted_at is not null then
    perform app.raise_error(409, 'token_usage_deleted',
      format('token usage report %s was deleted', p_report_id),
      jsonb_build_object('report_id', p_report_id, 'deleted_at', v_old.deleted_at));
  end if;
  select id into v_next from app.token_usage_reports
   where tenant_id = v_me.tenant_id and corrects_id = p_report_id;
  if found then
    perform app.raise_error(409, 'already_corrected',
      format('token usage report %s was already corrected by %s; correct the latest version',
             p_report_id, v_next),
      jsonb_build_object('report_id', p_report_id, 'corrected_by', v_next));
  end if;
  if p_reason is not null and length(p_reason) > 2000 then
    perform app.usage_invalid('reason', null, 'must be at most 2000 characters');
  end if;
  v_usage := jsonb_strip_nulls(jsonb_build_object(
    'input_tokens', p_input_tokens, 'output_tokens', p_output_tokens,
    'model_name', p_model_name, 'cost_millicents', p_cost_millicents, 'phase', p_phase,
    'session_id', p_session_id, 'skill_version_id', p_skill_version_id,
    'tool_call_count', p_tool_call_count, 'tests_run_count', p_tests_run_count));
  if v_usage = '{}'::jsonb and p_metadata is null then
    perform app.raise_error(422, 'invalid_token_usage', 'a correction must change a field');
  end if;
  if p_metadata is not null then
    v_usage := v_usage || jsonb_build_object('metadata', p_metadata);
  end if;
  if p_reason is not null then
    v_usage := jsonb_set(v_usage, '{metadata}', coalesce(v_usage -> 'metadata', v_old.metadata)
                         || jsonb_build_object('correction_reason', p_reason));
  end if;
  return app.write_usage(v_me, v_old.story_id, v_usage, false, v_old);
end
$$;

-- Soft delete of the latest version of a report (user keys only); it leaves every total.
create or replace function api.delete_token_usage(report_id uuid) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  p_report_id uuid := delete_token_usage.report_id;
  v_me app.identity := app.require_identity();
  r app.token_usage_reports;
  v_next uuid;
begin
  perform app.require_role(v_me, array['user'], 'delete_token_usage');
  select * into r from app.token_usage_reports
   where tenant_id = v_me.tenant_id and id = p_report_id for update;
  if not found then
    perform app.raise_error(404, 'token_usage_not_found',
      format('token usage report %s not found', p_report_id),
      jsonb_build_object('report_id', p_report_id));
  end if;
  if r.deleted_at is not null then
    perform app.raise_error(409, 'token_usage_deleted',
      format('token usage report %s is already deleted', p_report_id),
      jsonb_build_object('report_id', p_report_id, 'deleted_at', r.deleted_at));
  end if;
  select id into v_next from app.token_usage_reports
   where tenant_id = v_me.tenant_id and corrects_id = p_report_id;
  if found then
    perform app.raise_error(409, 'already_corrected',
      format('token usage report %s was corrected by %s; delete the latest version',
             p_report_id, v_next),
      jsonb_build_object('report_id', p_report_id, 'corrected_by', v_next));
  end if;
  update app.token_usage_reports
     set deleted_at = now(), deleted_by_key_id = v_me.key_id
   where tenant_id = v_me.tenant_id and id = p_report_id
  returning * into r;
  perform app.apply_usage_delta(r.tenant_id, r.story_id, r.epic_id, r.project_id, r.agent_id,
                                -r.total_tokens, -r.cost_millicents, -1);
  return app.usage_json(r);
end
$$;

create or replace function api.story_token_usage(story_id uuid) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  p_story_id uuid := story_token_usage.story_id;
  v_me app.identity := app.require_identity();
  v_totals jsonb;
begin
  perform app.require_role(v_me, array['agent', 'orchestrator', 'user'], 'story_token_usage');
  if not exists (select 1 from app.stories where tenant_id = v_me.tenant_id and id = p_story_id)
  then
    perform app.raise_error(404, 'story_not_found', format('story %s not found', p_story_id),
                            jsonb_build_object('story_id', p_story_id));
  end if;
  select jsonb_build_object(
           'reports', count(*),
           'input_tokens', coalesce(sum(input_tokens), 0),
           'output_tokens', coalesce(sum(output_tokens), 0),
           'total_tokens', coalesce(sum(total_tokens), 0),
           'cost_millicents', coalesce(sum(cost_millicents), 0))
    into v_totals
    from app.effective_token_usage
   where tenant_id = v_me.tenant_id and story_id = p_story_id;
  return jsonb_build_object(
    'story_id', p_story_id,
    'totals', v_totals,
    'budget', app.governing_budget(v_me.tenant_id, p_story_id),
    'reports', coalesce((select jsonb_agg(app.usage_json(r) order by r.seq)
                           from app.token_usage_reports r
                          where r.tenant_id = v_me.tenant_id and r.story_id = p_story_id
                            and r.deleted_at is null
                            and not exists (select 1 from app.token_usage_reports c
                                             where c.tenant_id = r.tenant_id
                                               and c.corrects_id = r.id)), '[]'::jsonb),
    'history', coalesce((select jsonb_agg(app.usage_json(r) order by r.seq)
                           from app.token_usage_reports r
                          where r.tenant_id = v_me.tenant_id and r.story_id = p_story_id),
                        '[]'::jsonb));
end
$$;

-- ---------------------------------------------------------------------------------------
-- Anomalies: listing and resolving
-- ---------------------------------------------------------------------------------------
create or replace function app.anomaly_json(a app.cost_anomalies) returns jsonb
language sql stable as $$
  select to_jsonb(a) - 'tenant_id'
$$;

create or replace function api.list_cost_anomalies(
  resolved boolean default false, project_id uuid default null,
  story_id uuid default null, "limit" integer default 100, "offset" integer default 0
) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  p_resolved boolean := list_cost_anomalies.resolved;
  p_project_id uuid := list_cost_anomalies.project_id;
  p_story_id uuid := list_cost_anomalies.story_id;
  p_limit integer := list_cost_anomalies."limit";
  p_offset integer := list_cost_anomalies."offset";
  v_me app.identity := app.require_identity();
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'list_cost_anomalies');
  if p_limit is null or p_limit not between 1 and 500 or p_offset is null or p_offset < 0 then
    perform app.raise_error(422, 'invalid_pagination', 'limit must be 1..500 and offset >= 0',
      jsonb_build_object('limit', p_limit, 'offset', p_offset));
  end if;
  return coalesce((
    select jsonb_agg(app.anomaly_json(a) order by a.detected_at desc, a.id)
      from (select * from app.cost_anomalies a
             where a.tenant_id = v_me.tenant_id
               and (p_resolved is null or (a.resolved_at is not null) = p_resolved)
               and (p_project_id is null or a.project_id = p_project_id)
               and (p_story_id is null or a.story_id = p_story_id)
             order by a.detected_at desc, a.id
             limit p_limit offset p_offset) a), '[]'::jsonb);
end
$$;

create or replace function api.resolve_cost_anomaly(anomaly_id uuid, note text default null) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  p_anomaly_id uuid := resolve_cost_anomaly.anomaly_id;
  p_note text := resolve_cost_anomaly.note;
  v_me app.identity := app.require_identity();
  a app.cost_anomalies;
begin
  perform app.require_role(v_me, array['user'], 'resolve_cost_anomaly');
  if p_note is not null and length(p_note) > 5000 then
    perform app.raise_error(422, 'invalid_note', 'note must be at most 5000 characters');
  end if;
  select * into a from app.cost_anomalies
   where tenant_id = v_me.tenant_id and id = p_anomaly_id for update;
  if not found then
    perform app.raise_error(404, 'anomaly_not_found',
      format('cost anomaly %s not found', p_anomaly_id),
      jsonb_build_object('anomaly_id', p_anomaly_id));
  end if;
  if a.resolved_at is not null then
    perform app.raise_error(409, 'anomaly_already_resolved',
      format('cost anomaly %s was resolved at %s', p_anomaly_id, a.resolved_at),
      jsonb_build_object('anomaly_id', p_anomaly_id, 'resolved_at', a.resolved_at));
  end if;
  update app.cost_anomalies
     set resolved_at = now(), resolved_by_key_id = v_me.key_id, resolution_note = p_note
   where tenant_id = v_me.tenant_id and id = p_anomaly_id
  returning * into a;
  return app.anomaly_json(a);
end
$$;

-- ---------------------------------------------------------------------------------------
-- Analytics views (security_invoker: RLS limits them to the caller's tenant, an API key's
-- or an analyst login's). Effective usage only: corrections replace, deletes drop out.
-- ---------------------------------------------------------------------------------------

-- The product page's table: agent, tokens, stories, tokens/story, dominant model, budget %.
-- tokens_per_story is floored; budget_pct is the floored share of the agent's own budget
-- (the larger of the token and the millicent ratio), null without an agent budget.
create or replace view api.agent_cost_ranking with (security_invoker = true) as
with per_agent as (
  select u.tenant_id, u.agent_id, sum(u.total_tokens)::bigint as tokens,
         count(distinct u.story_id)::bigint as stories,
         sum(u.cost_millicents)::bigint as cost_millicents
    from app.effective_token_usage u
   group by u.tenant_id, u.agent_id
), per_model as (
  select distinct on (u.tenant_id, u.agent_id) u.tenant_id, u.agent_id, u.model_name
    from app.effective_token_usage u
   group by u.tenant_id, u.agent_id, u.model_name
   order by u.tenant_id, u.agent_id, sum(u.total_tokens) desc, u.model_name
)
select a.name as agent, p.tokens, p.stories, p.tokens / p.stories as tokens_per_story,
       m.model_name as dominant_model,
       floor(greatest(p.tokens * 100.0 / b.limit_tokens,
                      p.cost_millicents * 100.0 / b.limit_millicents))::integer as budget_pct
  from per_agent p
  join app.agents a on a.tenant_id = p.tenant_id and a.id = p.agent_id
  join per_model m on m.tenant_id = p.tenant_id and m.agent_id = p.agent_id
  left join app.token_budgets b
    on b.tenant_id = p.tenant_id and b.scope_type = 'agent' and b.scope_id = p.agent_id
 order by tokens_per_story, agent;

create or replace view api.model_mix with (security_invoker = true) as
select u.model_name, count(*)::bigint as reports,
       count(distinct u.agent_id)::bigint as agents,
       count(distinct u.story_id)::bigint as stories,
       sum(u.input_tokens)::bigint as input_tokens, sum(u.output_tokens)::bigint as output_tokens,
       sum(u.total_tokens)::bigint as tokens, sum(u.cost_millicents)::bigint as cost_millicents,
       round(100.0 * sum(u.total_tokens)
             / nullif(sum(sum(u.total_tokens)) over (partition by u.tenant_id), 0), 2)
         as token_share_pct
  from app.effective_token_usage u
 group by u.tenant_id, u.model_name
 order by tokens desc, model_name;

create or replace view api.cost_by_epic with (security_invoker = true) as
select e.project_id, e.id as epic_id, e.number as epic_number, e.title as epic_title,
       count(distinct u.story_id)::bigint as stories, count(u.id)::bigint as reports,
       coalesce(sum(u.total_tokens), 0)::bigint as tokens,
       coalesce(sum(u.cost_millicents), 0)::bigint as cost_millicents,
       floor(greatest(coalesce(sum(u.total_tokens), 0) * 100.0 / max(b.limit_tokens),
                      coalesce(sum(u.cost_millicents), 0) * 100.0 / max(b.limit_millicents)))::integer
         as budget_pct
  from app.epics e
  left join app.effective_token_usage u on u.tenant_id = e.tenant_id and u.epic_id = e.id
  left join app.token_budgets b
    on b.tenant_id = e.tenant_id and b.scope_type = 'epic' and b.scope_id = e.id
 group by e.tenant_id, e.project_id, e.id, e.number, e.title
 order by e.project_id, e.number;

create or replace view api.cost_by_project with (security_invoker = true) as
select p.id as project_id, p.name as project, p.slug,
       count(distinct u.epic_id)::bigint as epics, count(distinct u.story_id)::bigint as stories,
       count(distinct u.agent_id)::bigint as agents, count(u.id)::bigint as reports,
       coalesce(sum(u.total_tokens), 0)::bigint as tokens,
       coalesce(sum(u.cost_millicents), 0)::bigint as cost_millicents,
       floor(greatest(coalesce(sum(u.total_tokens), 0) * 100.0 / max(b.limit_tokens),
                      coalesce(sum(u.cost_millicents), 0) * 100.0 / max(b.limit_millicents)))::integer
         as budget_pct
  from app.projects p
  left join app.effective_token_usage u on u.tenant_id = p.tenant_id and u.project_id = p.id
  left join app.token_budgets b
    on b.tenant_id = p.tenant_id and b.scope_type = 'project' and b.scope_id = p.id
 group by p.tenant_id, p.id, p.name, p.slug
 order by cost_millicents desc, project;

-- Daily trend per project (UTC days). A correction counts on the day of the report it
-- corrects: it restates that day's usage.
create or replace view api.cost_daily with (security_invoker = true) as
select (o.created_at at time zone 'UTC')::date as day, u.project_id,
       count(*)::bigint as reports, count(distinct u.story_id)::bigint as stories,
       count(distinct u.agent_id)::bigint as agents,
       sum(u.total_tokens)::bigint as tokens, sum(u.cost_millicents)::bigint as cost_millicents
  from app.effective_token_usage u
  join app.token_usage_reports o on o.tenant_id = u.tenant_id and o.id = u.root_id
 group by u.tenant_id, (o.created_at at time zone 'UTC')::date, u.project_id
 order by day, project_id;

-- ---------------------------------------------------------------------------------------
-- Skills: named prompts with versions; cost performance per version
-- ---------------------------------------------------------------------------------------
create or replace function api.create_skill(name text, description text default null) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  p_name text := create_skill.name;
  p_description text := create_skill.description;
  v_me app.identity := app.require_identity();
  s app.skills;
begin
  perform app.require_role(v_me, array['user', 'orchestrator'], 'create_skill');
  if p_name is null or length(trim(p_name)) = 0 or length(p_name) > 200 then
    perform app.raise_error(422, 'invalid_skill', 'name must be 1 to 200 characters',
                            jsonb_build_object('field', 'name'));
  end if;
  if p_description is not null and length(p_description) > 20000 then
    perform app.raise_error(422, 'invalid_skill', 'description must be at most 20000 characters',
                            jsonb_build_object('field', 'description'));
  end if;
  insert into app.skills (tenant_id, name, description)
  values (v_me.tenant_id, trim(p_name), p_description)
  on conflict (tenant_id, name) do nothing
  returning * into s;
  if s.id is null then
    perform app.raise_error(409, 'skill_name_taken', format('a skill named %L exists', p_name),
                            jsonb_build_object('name', p_name));
  end if;
  return to_jsonb(s) - 'tenant_id';
end
$$;

create or replace function api.create_skill_version(
  skill_id uuid, prompt_text text, changelog text default null
) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  p_skill_id uuid := create_skill_version.skill_id;
  p_prompt_text text := create_skill_version.prompt_text;
  p_changelog text := create_skill_version.changelog;
  v_me app.identity := app.require_identity();
  v app.skill_versions;
begin
  perform app.require_role(v_me, array['user', 'orchestrator'], 'create_skill_version');
  -- Locking the skill serialises version numbers.
  perform 1 from app.skills where tenant_id = v_me.tenant_id and id = p_skill_id for update;
  if not found then
    perform app.raise_error(404, 'skill_not_found', format('skill %s not found', p_skill_id),
                            jsonb_build_object('skill_id', p_skill_id));
  end if;
  if p_prompt_text is null or length(p_prompt_text) = 0 or length(p_prompt_text) > 200000 then
    perform app.raise_error(422, 'invalid_skill_version',
      'prompt_text must be 1 to 200000 characters', jsonb_build_object('field', 'prompt_text'));
  end if;
  if p_changelog is not null and length(p_changelog) > 20000 then
    perform app.raise_error(422, 'invalid_skill_version',
      'changelog must be at most 20000 characters', jsonb_build_object('field', 'changelog'));
  end if;
  insert into app.skill_versions (tenant_id, skill_id, version, prompt_text, changelog)
  values (v_me.tenant_id, p_skill_id,
          coalesce((select max(version) from app.skill_versions
                     where tenant_id = v_me.tenant_id and skill_id = p_skill_id), 0) + 1,
          p_prompt_text, p_changelog)
  returning * into v;
  return to_jsonb(v) - 'tenant_id';
end
$$;

create or replace function api.list_skills() returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'list_skills');
  return coalesce((
    select jsonb_agg(to_jsonb(s) - 'tenant_id' || jsonb_build_object(
             'versions', (select jsonb_agg(jsonb_build_object('id', v.id, 'version', v.version,
                                             'changelog', v.changelog, 'created_at', v.created_at)
                                           order by v.version)
                            from app.skill_versions v
                           where v.tenant_id = s.tenant_id and v.skill_id = s.id))
           order by s.name)
      from app.skills s where s.tenant_id = v_me.tenant_id), '[]'::jsonb);
end
$$;

-- Per version: invocations (effective usage reports naming it), total and average cost,
-- the verified/rejected counts of the stories involved, the change of the average against
-- the previous version, and a cost regression flag (≥ 3 uses averaging ≥ 2× the previous
-- version's average).
create or replace function api.skill_cost_performance(skill_id uuid) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  p_skill_id uuid := skill_cost_performance.skill_id;
  v_me app.identity := app.require_identity();
  s app.skills;
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'],
                           'skill_cost_performance');
  select * into s from app.skills where tenant_id = v_me.tenant_id and id = p_skill_id;
  if not found then
    perform app.raise_error(404, 'skill_not_found', format('skill %s not found', p_skill_id),
                            jsonb_build_object('skill_id', p_skill_id));
  end if;
  return jsonb_build_object('skill', to_jsonb(s) - 'tenant_id', 'versions', coalesce((
    with per_version as (
      select v.id, v.version, v.changelog, v.created_at,
             count(u.id)::bigint as invocations,
             coalesce(sum(u.cost_millicents), 0)::bigint as total_cost_millicents,
             coalesce(sum(u.total_tokens), 0)::bigint as total_tokens,
             round(avg(u.cost_millicents), 2) as avg_cost_millicents,
             round(avg(u.total_tokens), 2) as avg_tokens,
             count(distinct u.story_id)::bigint as stories,
             count(distinct u.story_id) filter (where st.verified_status = 'verified')::bigint
               as verified_stories,
             count(distinct u.story_id) filter (where st.verified_status = 'rejected')::bigint
               as rejected_stories
        from app.skill_versions v
        left join app.effective_token_usage u
          on u.tenant_id = v.tenant_id and u.skill_version_id = v.id
        left join app.stories st on st.tenant_id = u.tenant_id and st.id = u.story_id
       where v.tenant_id = v_me.tenant_id and v.skill_id = p_skill_id
       group by v.id, v.version, v.changelog, v.created_at
    ), with_prev as (
      select pv.*, lag(pv.avg_cost_millicents) over (order by pv.version) as prev_avg,
             lag(pv.version) over (order by pv.version) as prev_version
        from per_version pv
    )
    select jsonb_agg(jsonb_build_object(
             'version_id', w.id, 'version', w.version, 'changelog', w.changelog,
             'created_at', w.created_at, 'invocations', w.invocations,
             'total_cost_millicents', w.total_cost_millicents,
             'avg_cost_millicents', w.avg_cost_millicents, 'total_tokens', w.total_tokens,
             'avg_tokens', w.avg_tokens, 'stories', w.stories,
             'verified_stories', w.verified_stories, 'rejected_stories', w.rejected_stories,
             'previous_version', w.prev_version,
             'previous_avg_cost_millicents', w.prev_avg,
             'avg_cost_change_pct',
               round(100.0 * (w.avg_cost_millicents - w.prev_avg) / nullif(w.prev_avg, 0), 2),
             'cost_regression', coalesce(w.invocations >= 3 and w.prev_avg > 0
                                         and w.avg_cost_millicents >= 2 * w.prev_avg, false))
           order by w.version)
      from with_prev w), '[]'::jsonb));
end
$$;

-- ---------------------------------------------------------------------------------------
-- The analytics views over HTTP (/api/v1/analytics/...): one function per view, paginated.
-- ---------------------------------------------------------------------------------------
create or replace function app.view_page(p_view text, p_filter text, p_limit integer,
                                         p_offset integer) returns jsonb
language plpgsql stable as $$
declare
  v jsonb;
begin
  if p_limit is null or p_limit not between 1 and 500 or p_offset is null or p_offset < 0 then
    perform app.raise_error(422, 'invalid_pagination', 'limit must be 1..500 and offset >= 0',
      jsonb_build_object('limit', p_limit, 'offset', p_offset));
  end if;
  -- p_view and p_filter are constants of the callers below, never client text.
  execute format('select coalesce(jsonb_agg(to_jsonb(r)), ''[]''::jsonb) from '
                 '(select * from api.%I r where %s limit %s offset %s) r',
                 p_view, coalesce(p_filter, 'true'), p_limit, p_offset)
    into v;
  return v;
end
$$;

create or replace function api.analytics_agents("limit" integer default 100,
                                                "offset" integer default 0) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'analytics');
  return app.view_page('agent_cost_ranking', null, analytics_agents."limit",
                       analytics_agents."offset");
end
$$;

create or replace function api.analytics_models("limit" integer default 100,
                                                "offset" integer default 0) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'analytics');
  return app.view_page('model_mix', null, analytics_models."limit", analytics_models."offset");
end
$$;

create or replace function api.analytics_projects("limit" integer default 100,
                                                  "offset" integer default 0) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'analytics');
  return app.view_page('cost_by_project', null, analytics_projects."limit",
                       analytics_projects."offset");
end
$$;

create or replace function api.analytics_epics(project_id uuid default null,
                                               "limit" integer default 100,
                                               "offset" integer default 0) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'analytics');
  return app.view_page('cost_by_epic',
    case when analytics_epics.project_id is not null
         then format('project_id = %L', analytics_epics.project_id) end,
    analytics_epics."limit", analytics_epics."offset");
end
$$;

create or replace function api.analytics_daily(project_id uuid default null,
                                               since date default null,
                                               until date default null,
                                               "limit" integer default 100,
                                               "offset" integer default 0) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'analytics');
  return app.view_page('cost_daily', nullif(concat_ws(' and ',
      case when analytics_daily.project_id is not null
           then format('project_id = %L', analytics_daily.project_id) end,
      case when since is not null then format('day >= %L::date', since) end,
      case when until is not null then format('day <= %L::date', until) end), ''),
    analytics_daily."limit", analytics_daily."offset");
end
$$;

-- GET /stories/{id}/token-usage: the effective reports as a list, totals and the governing
-- budget in meta (api.story_token_usage has the same plus the full history).
create or replace function api.list_story_token_usage(story_id uuid) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
declare
  v jsonb := api.story_token_usage(list_story_token_usage.story_id);
begin
  return jsonb_build_object('data', v -> 'reports',
    'meta', jsonb_build_object('story_id', v -> 'story_id', 'totals', v -> 'totals',
                               'budget', v -> 'budget', 'has_more', false));
end
$$;

reset role;
