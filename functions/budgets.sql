-- Budgets (SPEC §8): which budgets cover a piece of work, how much of each is used, the
-- exactly-once warning/exceeded events and the 402 of blocking budgets. The state machine
-- calls app.assert_budget_allows from api.claim_story; usage reports go through
-- app.evaluate_budgets (functions/cost.sql).
--
-- Which budgets apply: every explicit budget on the story, its epic, its project and the
-- acting agent, each against its own scope's running total (app.cost_totals). The tenant
-- default (settings default_budget_millicents / default_budget_tokens, mode from
-- default_budget_mode, 'warn' unless set) stands in for a project budget where the project
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
           coalesce(b.alert_threshold_pct, (s.settings ->> 'budget_alert_threshold_pct')::int,
                    80) as threshold_pct,
           b.mode, sc.depth
      from scopes sc
      join app.token_budgets b
        on b.tenant_id = p_tenant_id and b.scope_type = sc.scope_type and b.scope_id = sc.scope_id
      cross join s
     where sc.scope_id is not null
    union all
    select 'default:project:' || p_project_id, null, 'project', p_project_id,
           (s.settings ->> 'default_budget_millicents')::bigint,
           (s.settings ->> 'default_budget_tokens')::bigint,
           coalesce((s.settings ->> 'budget_alert_threshold_pct')::int, 80),
           coalesce(s.settings ->> 'default_budget_mode', 'warn'), 4
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

reset role;
