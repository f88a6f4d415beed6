-- Budgets (SPEC §8): which budgets cover a piece of work, how much of each is used, the
-- exactly-once warning/exceeded events and the 402 of blocking budgets. The state machine
-- calls app.assert_budget_allows from api.claim_story; usage reports go through
-- app.evaluate_budgets (functions/cost.sql).
--
-- Which budgets apply: every explicit budget on the story, its epic, its project and the
-- acting agent, each against its own scope's running total (app.cost_totals). The tenant
-- default (settings default_budget_millicents / default_budget_tokens; it only warns, blocking
-- needs an explicit budget) stands in for a project budget where the project
-- has none. "Inheritance" (story → epic → project → tenant default) is the budget that
-- governs a story for display: the nearest one (app.governing_budget).
set role loopctl_owner;

-- Percentage used: the larger of the token and the millicent ratio (either limit may be null).
create or replace function app.budget_pct(
  p_tokens bigint, p_millicents bigint, p_limit_tokens bigint, p_limit_millicents bigint
) returns numeric
language sql immutable parallel safe as $$
  select greatest(p_tokens * 100.0 / nullif(p_limit_tokens, 0),
                  p_millicents * 100.0 / nullif(p_limit_millicents, 0))
$$;

create or replace function app.applicable_budgets(
  p_tenant_id uuid, p_story_id uuid, p_epic_id uuid, p_project_id uuid, p_agent_id uuid
) returns table (
  budget_key text, budget_id uuid, scope_type text, scope_id uuid,
  limit_millicents bigint, limit_tokens bigint, threshold_pct integer, mode text,
  spent_tokens bigint, spent_millicents bigint, pct numeric
)
language sql stable as $$
  with s as (select app.tenant_settings(p_tenant_id) as settings),
  scopes(scope_type, scope_id, depth) as (
    values ('story', p_story_id, 1), ('epic', p_epic_id, 2), ('project', p_project_id, 3),
           ('agent', p_agent_id, 5)
  ),
  budgets as (
    select b.id::text as budget_key, b.id as budget_id, b.scope_type, b.scope_id,
           b.limit_millicents, b.limit_tokens,
           coalesce(b.alert_threshold_pct, (s.settings ->> 'budget_alert_threshold_pct')::numeric::int,
                    80) as threshold_pct,
           b.mode, sc.depth
      from scopes sc
      join app.token_budgets b
        on b.tenant_id = p_tenant_id and b.scope_type = sc.scope_type and b.scope_id = sc.scope_id
      cross join s
     where sc.scope_id is not null
    union all
    select 'default:project:' || p_project_id, null, 'project', p_project_id,
           (s.settings ->> 'default_budget_millicents')::numeric::bigint,
           (s.settings ->> 'default_budget_tokens')::numeric::bigint,
           coalesce((s.settings ->> 'budget_alert_threshold_pct')::numeric::int, 80),
           'warn', 4
      from s
     where p_project_id is not null
       and (s.settings ->> 'default_budget_millicents' is not null
            or s.settings ->> 'default_budget_tokens' is not null)
       and not exists (select 1 from app.token_budgets b
                        where b.tenant_id = p_tenant_id and b.scope_type = 'project'
                          and b.scope_id = p_project_id)
  )
  select b.budget_key, b.budget_id, b.scope_type, b.scope_id, b.limit_millicents,
         b.limit_tokens, b.threshold_pct, b.mode,
         coalesce(t.tokens, 0), coalesce(t.cost_millicents, 0),
         app.budget_pct(coalesce(t.tokens, 0), coalesce(t.cost_millicents, 0),
                        b.limit_tokens, b.limit_millicents)
    from budgets b
    left join app.cost_totals t
      on t.tenant_id = p_tenant_id and t.scope_type = b.scope_type and t.scope_id = b.scope_id
   order by b.depth
$$;

-- The 402 of a blocking budget, naming it.
create or replace function app.raise_budget_exceeded(
  p_budget_key text, p_scope_type text, p_scope_id uuid, p_pct numeric,
  p_limit_tokens bigint, p_limit_millicents bigint, p_action text
) returns void
language plpgsql stable as $$
begin
  perform app.raise_error(402, 'budget_exceeded',
    format('%s refused: the blocking %s budget %s (%s %s) is exhausted at %s%% of %s',
           p_action,
           case when p_budget_key like 'default:%' then 'tenant default' else p_scope_type end,
           p_budget_key, p_scope_type, p_scope_id, floor(p_pct),
           concat_ws(' and ', p_limit_millicents || ' millicents', p_limit_tokens || ' tokens')),
    jsonb_build_object('budget_id', p_budget_key, 'scope_type', p_scope_type,
                       'scope_id', p_scope_id, 'pct_used', round(p_pct, 2),
                       'limit_tokens', p_limit_tokens, 'limit_millicents', p_limit_millicents,
                       'action', p_action),
    'raise the budget (set_token_budget), switch it to mode warn, or delete it');
end
$$;

-- Called by api.claim_story: refuses (402) a claim covered by an exhausted blocking budget.
create or replace function app.assert_budget_allows(
  p_tenant_id uuid, p_story_id uuid, p_agent_id uuid
) returns void
language plpgsql stable as $$
declare
  s record;
  b record;
begin
  select st.project_id, st.epic_id into s
    from app.stories st where st.tenant_id = p_tenant_id and st.id = p_story_id;
  if not found then
    return;  -- the caller reports unknown stories itself
  end if;
  for b in
    select * from app.applicable_budgets(p_tenant_id, p_story_id, s.epic_id, s.project_id,
                                         p_agent_id)
  loop
    if b.mode = 'block' and b.pct >= 100 then
      perform app.raise_budget_exceeded(b.budget_key, b.scope_type, b.scope_id, b.pct,
                                        b.limit_tokens, b.limit_millicents, 'claim');
    end if;
  end loop;
end
$$;

-- After a usage delta has been applied to app.cost_totals (whose rows this transaction now
-- holds locked): refuse when a blocking budget was already exhausted before this report
-- (p_enforce_block), and fire each threshold event once per budget. The fired-flag row's
-- primary key is the exactly-once gate: a concurrent duplicate waits for the first insert
-- and then does nothing.
create or replace function app.evaluate_budgets(
  p_tenant_id uuid, p_story_id uuid, p_epic_id uuid, p_project_id uuid, p_agent_id uuid,
  p_delta_tokens bigint, p_delta_millicents bigint, p_enforce_block boolean
) returns jsonb
language plpgsql volatile as $$
declare
  b record;
  v_prior numeric;
  v_level text;
  v_fired jsonb := '[]'::jsonb;
  v_status jsonb := '[]'::jsonb;
begin
  for b in
    select * from app.applicable_budgets(p_tenant_id, p_story_id, p_epic_id, p_project_id,
                                         p_agent_id)
  loop
    v_prior := app.budget_pct(b.spent_tokens - p_delta_tokens,
                              b.spent_millicents - p_delta_millicents,
                              b.limit_tokens, b.limit_millicents);
    if p_enforce_block and b.mode = 'block' and v_prior >= 100 then
      perform app.raise_budget_exceeded(b.budget_key, b.scope_type, b.scope_id, v_prior,
                                        b.limit_tokens, b.limit_millicents,
                                        'token usage report');
    end if;
    foreach v_level in array array['warning', 'exceeded'] loop
      continue when b.pct < case v_level when 'warning' then b.threshold_pct else 100 end;
      insert into app.budget_alerts (tenant_id, budget_key, level, pct)
      values (p_tenant_id, b.budget_key, v_level, round(b.pct, 2))
      on conflict do nothing;
      if found then
        perform app.emit_event(p_tenant_id, 'token.budget_' || v_level,
          jsonb_build_object('budget_id', b.budget_key, 'scope_type', b.scope_type,
                             'scope_id', b.scope_id, 'mode', b.mode,
                             'threshold_pct', b.threshold_pct, 'pct_used', round(b.pct, 2),
                             'spent_tokens', b.spent_tokens,
                             'spent_millicents', b.spent_millicents,
                             'limit_tokens', b.limit_tokens,
                             'limit_millicents', b.limit_millicents,
                             'story_id', p_story_id, 'agent_id', p_agent_id),
          p_project_id, 'token_budget', b.budget_id);
        v_fired := v_fired || jsonb_build_object('budget_id', b.budget_key, 'level', v_level);
      end if;
    end loop;
    v_status := v_status || jsonb_build_object(
      'budget_id', b.budget_key, 'scope_type', b.scope_type, 'scope_id', b.scope_id,
      'mode', b.mode, 'pct_used', round(b.pct, 2));
  end loop;
  return jsonb_build_object('budgets', v_status, 'events', v_fired);
end
$$;

-- The budget that governs a story by inheritance: story → epic → project → tenant default.
create or replace function app.governing_budget(p_tenant_id uuid, p_story_id uuid)
returns jsonb
language sql stable as $$
  select to_jsonb(b) - 'budget_key' || jsonb_build_object('budget_id', b.budget_key,
           'inherited_from', b.scope_type, 'pct_used', round(b.pct, 2))
    from app.stories st,
         lateral app.applicable_budgets(p_tenant_id, st.id, st.epic_id, st.project_id, null) b
   where st.tenant_id = p_tenant_id and st.id = p_story_id
   limit 1
$$;

-- A budget with its current use (explicit budgets; the tenant default is reported by
-- app.governing_budget).
create or replace function app.budget_json(b app.token_budgets) returns jsonb
language sql stable as $$
  select jsonb_build_object(
    'id', b.id, 'scope_type', b.scope_type, 'scope_id', b.scope_id,
    'limit_millicents', b.limit_millicents, 'limit_tokens', b.limit_tokens,
    'alert_threshold_pct', b.alert_threshold_pct,
    'effective_threshold_pct', coalesce(b.alert_threshold_pct,
      (app.tenant_settings(b.tenant_id) ->> 'budget_alert_threshold_pct')::numeric::int, 80),
    'mode', b.mode, 'created_at', b.created_at, 'updated_at', b.updated_at,
    'spent_tokens', coalesce(t.tokens, 0), 'spent_millicents', coalesce(t.cost_millicents, 0),
    'pct_used', round(coalesce(app.budget_pct(coalesce(t.tokens, 0),
                        coalesce(t.cost_millicents, 0), b.limit_tokens, b.limit_millicents),
                      0), 2),
    'fired', coalesce((select jsonb_agg(a.level order by a.level) from app.budget_alerts a
                        where a.tenant_id = b.tenant_id and a.budget_key = b.id::text),
                      '[]'::jsonb))
    from (select 1) one
    left join app.cost_totals t
      on t.tenant_id = b.tenant_id and t.scope_type = b.scope_type and t.scope_id = b.scope_id
$$;

-- Creates or replaces the budget of one scope. Raising a limit re-arms the events whose
-- level the new limit no longer reaches.
create or replace function api.set_token_budget(
  scope_type text, scope_id uuid, limit_millicents bigint default null,
  limit_tokens bigint default null, alert_threshold_pct integer default null,
  mode text default 'warn'
) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  p_scope_type text := set_token_budget.scope_type;
  p_scope_id uuid := set_token_budget.scope_id;
  p_limit_millicents bigint := set_token_budget.limit_millicents;
  p_limit_tokens bigint := set_token_budget.limit_tokens;
  p_alert_threshold_pct integer := set_token_budget.alert_threshold_pct;
  p_mode text := set_token_budget.mode;
  v_me app.identity := app.require_identity();
  b app.token_budgets;
  v_pct numeric;
  v_threshold integer;
  v_exists boolean;
begin
  perform app.require_role(v_me, array['user', 'orchestrator'], 'set_token_budget');
  if p_scope_type is null or p_scope_type not in ('project', 'epic', 'story', 'agent') then
    perform app.raise_error(422, 'invalid_budget', 'scope_type must be project, epic, story or agent',
                            jsonb_build_object('field', 'scope_type', 'value', p_scope_type));
  end if;
  if p_scope_id is null then
    perform app.raise_error(422, 'invalid_budget', 'scope_id is required',
                            jsonb_build_object('field', 'scope_id'));
  end if;
  if p_limit_millicents is null and p_limit_tokens is null then
    perform app.raise_error(422, 'invalid_budget',
      'a budget needs limit_millicents, limit_tokens or both',
      jsonb_build_object('field', 'limit_millicents'));
  end if;
  if p_limit_millicents is not null and p_limit_millicents not between 1 and 100000000000000 then
    perform app.raise_error(422, 'invalid_budget', 'limit_millicents must be between 1 and 10^14',
      jsonb_build_object('field', 'limit_millicents', 'value', p_limit_millicents));
  end if;
  if p_limit_tokens is not null and p_limit_tokens not between 1 and 1000000000000 then
    perform app.raise_error(422, 'invalid_budget', 'limit_tokens must be between 1 and 10^12',
      jsonb_build_object('field', 'limit_tokens', 'value', p_limit_tokens));
  end if;
  if p_alert_threshold_pct is not null and p_alert_threshold_pct not between 1 and 100 then
    perform app.raise_error(422, 'invalid_budget', 'alert_threshold_pct must be between 1 and 100',
      jsonb_build_object('field', 'alert_threshold_pct', 'value', p_alert_threshold_pct));
  end if;
  if coalesce(p_mode, '') not in ('warn', 'block') then
    perform app.raise_error(422, 'invalid_budget', 'mode must be warn or block',
                            jsonb_build_object('field', 'mode', 'value', p_mode));
  end if;
  v_exists := case p_scope_type
    when 'project' then exists (select 1 from app.projects
                                 where tenant_id = v_me.tenant_id and id = p_scope_id)
    when 'epic' then exists (select 1 from app.epics
                              where tenant_id = v_me.tenant_id and id = p_scope_id)
    when 'story' then exists (select 1 from app.stories
                               where tenant_id = v_me.tenant_id and id = p_scope_id)
    else exists (select 1 from app.agents where tenant_id = v_me.tenant_id and id = p_scope_id)
  end;
  if not v_exists then
    perform app.raise_error(404, p_scope_type || '_not_found',
      format('%s %s not found', p_scope_type, p_scope_id),
      jsonb_build_object('scope_type', p_scope_type, 'scope_id', p_scope_id));
  end if;

  insert into app.token_budgets as t (tenant_id, scope_type, scope_id, limit_millicents,
    limit_tokens, alert_threshold_pct, mode, created_by_key_id)
  values (v_me.tenant_id, p_scope_type, p_scope_id, p_limit_millicents, p_limit_tokens,
          p_alert_threshold_pct, p_mode, v_me.key_id)
  on conflict (tenant_id, scope_type, scope_id) do update
     set limit_millicents = excluded.limit_millicents, limit_tokens = excluded.limit_tokens,
         alert_threshold_pct = excluded.alert_threshold_pct, mode = excluded.mode,
         updated_at = now()
  returning * into b;

  select app.budget_pct(coalesce(t.tokens, 0), coalesce(t.cost_millicents, 0),
                        b.limit_tokens, b.limit_millicents)
    into v_pct
    from (select 1) one
    left join app.cost_totals t on t.tenant_id = b.tenant_id and t.scope_type = b.scope_type
                               and t.scope_id = b.scope_id;
  v_threshold := coalesce(b.alert_threshold_pct,
    (app.tenant_settings(b.tenant_id) ->> 'budget_alert_threshold_pct')::numeric::int, 80);
  delete from app.budget_alerts
   where tenant_id = b.tenant_id and budget_key = b.id::text
     and ((level = 'warning' and coalesce(v_pct, 0) < v_threshold)
          or (level = 'exceeded' and coalesce(v_pct, 0) < 100));
  return app.budget_json(b);
end
$$;

create or replace function api.list_budgets(scope_type text default null) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  p_scope_type text := list_budgets.scope_type;
  v_me app.identity := app.require_identity();
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'list_budgets');
  return coalesce((select jsonb_agg(app.budget_json(b) order by b.scope_type, b.created_at)
                     from app.token_budgets b
                    where b.tenant_id = v_me.tenant_id
                      and (p_scope_type is null or b.scope_type = p_scope_type)),
                  '[]'::jsonb);
end
$$;

create or replace function api.delete_budget(budget_id uuid) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  p_budget_id uuid := delete_budget.budget_id;
  v_me app.identity := app.require_identity();
  b app.token_budgets;
begin
  perform app.require_role(v_me, array['user', 'orchestrator'], 'delete_budget');
  delete from app.token_budgets where tenant_id = v_me.tenant_id and id = p_budget_id
  returning * into b;
  if not found then
    perform app.raise_error(404, 'budget_not_found', format('budget %s not found', p_budget_id),
                            jsonb_build_object('budget_id', p_budget_id));
  end if;
  delete from app.budget_alerts where tenant_id = v_me.tenant_id and budget_key = b.id::text;
  return jsonb_build_object('id', b.id, 'deleted', true);
end
$$;

reset role;
