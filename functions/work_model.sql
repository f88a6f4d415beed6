-- Work model (SPEC §4, reads of §5): projects, epics, stories, acceptance criteria,
-- dependencies, artifacts; import / merge-import / export; progress, ready/blocked lists
-- and the dependency graph.
--
-- Every api function is SECURITY DEFINER owned by loopctl_owner; RLS is forced on the
-- tables, so every query below sees only the caller's tenant and another tenant's id is
-- simply "not found" (404). Input is validated up front so callers get a 422 naming the
-- field, never a raw constraint error; the exception handlers are the safety net.
set role loopctl_owner;

-- ---------------------------------------------------------------------------------------
-- Small helpers (not granted to API roles; called from the api functions as the owner)
-- ---------------------------------------------------------------------------------------

-- Natural sort key for story numbers: "1.2" < "1.10" < "2.1".
create or replace function app.wm_number_key(p_number text) returns text[]
language sql immutable parallel safe as $$
  select array_agg(case when part ~ '^\d+$' then lpad(part, 32, '0') else part end
                   order by ord)
    from regexp_split_to_table(p_number, '[._-]') with ordinality as t(part, ord)
$$;

-- An epic number from JSON: an integer or a numeric string ("2"); null when it is neither.
create or replace function app.wm_epic_number(p jsonb) returns integer
language sql immutable parallel safe as $$
  select case
    when jsonb_typeof(p) = 'number' and (p #>> '{}') ~ '^\d{1,9}(\.0+)?$'
      then (p #>> '{}')::numeric::integer
    when jsonb_typeof(p) = 'string' and btrim(p #>> '{}') ~ '^\d{1,9}$'
      then btrim(p #>> '{}')::integer
  end
$$;

-- "epics[0].stories[1]" + "title"; a bare field name at the top level.
create or replace function app.wm_path(p_path text, p_key text) returns text
language sql immutable parallel safe as $$
  select case when coalesce(p_path, '') = '' then p_key else p_path || '.' || p_key end
$$;

-- One validation error: {path, message}.
create or replace function app.wm_err(p_path text, p_message text) returns jsonb
language sql immutable parallel safe as $$
  select jsonb_build_object('path', p_path, 'message', p_message)
$$;

-- Errors for a text field of a JSON object: presence, type, emptiness, length.
create or replace function app.wm_text_errors(
  p_obj jsonb, p_key text, p_path text, p_max integer,
  p_required boolean, p_nullable boolean default true
) returns jsonb
language plpgsql immutable parallel safe as $$
declare
  v jsonb := p_obj -> p_key;
  v_path text := case when p_path = '' then p_key else p_path || '.' || p_key end;
begin
  if v is null then
    return case when p_required then jsonb_build_array(app.wm_err(v_path, p_key || ' is required'))
                else '[]'::jsonb end;
  elsif jsonb_typeof(v) = 'null' then
    return case when p_nullable and not p_required then '[]'::jsonb
                else jsonb_build_array(app.wm_err(v_path, p_key || ' must not be null')) end;
  elsif jsonb_typeof(v) <> 'string' then
    return jsonb_build_array(app.wm_err(v_path, format('%s must be a string, not %s', p_key,
                                                       jsonb_typeof(v))));
  elsif not p_nullable and btrim(v #>> '{}') = '' then
    return jsonb_build_array(app.wm_err(v_path, p_key || ' must not be empty'));
  elsif length(v #>> '{}') > p_max then
    return jsonb_build_array(app.wm_err(v_path, format('%s is longer than %s characters',
                                                       p_key, p_max)));
  end if;
  return '[]'::jsonb;
end
$$;

-- Acceptance criteria as rows. Accepted element forms: {"criterion": "..."},
-- {"id": "AC-2", "description": "..."} and a plain string; an element without an id gets
-- "AC-<position>" (so the SPEC example yields AC-1, AC-2).
create or replace function app.wm_criteria(p_criteria jsonb)
returns table (ac_id text, "position" integer, description text)
language sql immutable parallel safe as $$
  select coalesce(case when jsonb_typeof(e) = 'object' and jsonb_typeof(e -> 'id') = 'string'
                       then btrim(e ->> 'id') end, 'AC-' || i),
         i::integer,
         case when jsonb_typeof(e) = 'string' then e #>> '{}'
              else coalesce(e ->> 'criterion', e ->> 'description') end
    from jsonb_array_elements(case when jsonb_typeof(p_criteria) = 'array' then p_criteria
                                   else '[]'::jsonb end) with ordinality as x(e, i)
$$;

create or replace function app.wm_criteria_errors(p_criteria jsonb, p_path text) returns jsonb
language plpgsql immutable parallel safe as $$
declare
  v_errors jsonb := '[]'::jsonb;
  e jsonb;
  i integer := 0;
  v_text jsonb;
  v_dups text[];
begin
  if jsonb_typeof(p_criteria) = 'null' then
    return v_errors;
  elsif jsonb_typeof(p_criteria) <> 'array' then
    return jsonb_build_array(app.wm_err(p_path, 'acceptance_criteria must be an array'));
  elsif jsonb_array_length(p_criteria) > 200 then
    return jsonb_build_array(app.wm_err(p_path, 'at most 200 acceptance criteria per story'));
  end if;
  for e in select x from jsonb_array_elements(p_criteria) x loop
    if jsonb_typeof(e) = 'string' then
      v_text := e;
    elsif jsonb_typeof(e) = 'object' then
      v_text := coalesce(e -> 'criterion', e -> 'description');
      if e ? 'id' and (jsonb_typeof(e -> 'id') <> 'string' or btrim(e ->> 'id') = ''
                       or length(e ->> 'id') > 64) then
        v_errors := v_errors || app.wm_err(format('%s[%s].id', p_path, i),
                                           'id must be a non-empty string of at most 64 characters');
      end if;
    else
      v_errors := v_errors || app.wm_err(format('%s[%s]', p_path, i),
        'a criterion must be {"criterion": "..."} or {"id": "AC-1", "description": "..."}');
      i := i + 1;
      continue;
    end if;
    if v_text is null or jsonb_typeof(v_text) <> 'string' or btrim(v_text #>> '{}') = '' then
      v_errors := v_errors || app.wm_err(format('%s[%s]', p_path, i),
                                         'a criterion needs a non-empty text');
    elsif length(v_text #>> '{}') > 5000 then
      v_errors := v_errors || app.wm_err(format('%s[%s]', p_path, i),
                                         'a criterion is longer than 5000 characters');
    end if;
    i := i + 1;
  end loop;
  if jsonb_array_length(v_errors) = 0 then
    select array_agg(ac_id order by ac_id) into v_dups
      from (select c.ac_id from app.wm_criteria(p_criteria) c
             group by c.ac_id having count(*) > 1) d;
    if v_dups is not null then
      v_errors := v_errors || app.wm_err(p_path,
        'duplicate criterion ids: ' || array_to_string(v_dups, ', '));
    end if;
  end if;
  return v_errors;
end
$$;

-- Errors of one story object. p_new: the story will be created (title required).
create or replace function app.wm_story_errors(p jsonb, p_path text, p_new boolean) returns jsonb
language plpgsql immutable parallel safe as $$
declare
  v_errors jsonb := '[]'::jsonb;
  v_hours jsonb;
begin
  if jsonb_typeof(p) is distinct from 'object' then
    return jsonb_build_array(app.wm_err(p_path, 'a story must be a JSON object'));
  end if;
  if jsonb_typeof(p -> 'number') is distinct from 'string' then
    v_errors := v_errors || app.wm_err(app.wm_path(p_path, 'number'),
      'number is required and must be a string such as "1.1"');
  elsif (p ->> 'number') !~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$' then
    v_errors := v_errors || app.wm_err(app.wm_path(p_path, 'number'), format(
      'story number %s must be 1-32 letters, digits, ".", "_" or "-", starting with a letter or digit',
      p -> 'number'));
  end if;
  v_errors := v_errors || app.wm_text_errors(p, 'title', p_path, 500, p_new, false)
                       || app.wm_text_errors(p, 'description', p_path, 50000, false);
  v_hours := p -> 'estimated_hours';
  if v_hours is not null and jsonb_typeof(v_hours) <> 'null' then
    if jsonb_typeof(v_hours) <> 'number' then
      v_errors := v_errors || app.wm_err(app.wm_path(p_path, 'estimated_hours'),
                                         'estimated_hours must be a number');
    elsif (v_hours #>> '{}')::numeric < 0 or (v_hours #>> '{}')::numeric >= 1000000 then
      v_errors := v_errors || app.wm_err(app.wm_path(p_path, 'estimated_hours'),
                                         'estimated_hours must be between 0 and 999999.99');
    end if;
  end if;
  if p ? 'acceptance_criteria' then
    v_errors := v_errors || app.wm_criteria_errors(p -> 'acceptance_criteria',
                                                   app.wm_path(p_path, 'acceptance_criteria'));
  end if;
  return v_errors;
end
$$;

-- Errors of one epic object (its stories are checked separately).
create or replace function app.wm_epic_errors(p jsonb, p_path text, p_new boolean) returns jsonb
language plpgsql immutable parallel safe as $$
declare
  v_errors jsonb := '[]'::jsonb;
begin
  if jsonb_typeof(p) is distinct from 'object' then
    return jsonb_build_array(app.wm_err(p_path, 'an epic must be a JSON object'));
  end if;
  if app.wm_epic_number(p -> 'number') is null then
    v_errors := v_errors || app.wm_err(app.wm_path(p_path, 'number'),
      'number is required and must be a non-negative integer (or a numeric string)');
  end if;
  v_errors := v_errors || app.wm_text_errors(p, 'title', p_path, 500, p_new, false)
                       || app.wm_text_errors(p, 'description', p_path, 20000, false)
                       || app.wm_text_errors(p, 'phase', p_path, 200, false);
  if p ? 'position' and jsonb_typeof(p -> 'position') <> 'null'
     and (jsonb_typeof(p -> 'position') <> 'number'
          or (p ->> 'position') !~ '^-?\d{1,9}$') then
    v_errors := v_errors || app.wm_err(app.wm_path(p_path, 'position'), 'position must be an integer');
  end if;
  if p ? 'stories' and jsonb_typeof(p -> 'stories') <> 'array' then
    v_errors := v_errors || app.wm_err(app.wm_path(p_path, 'stories'), 'stories must be an array');
  end if;
  return v_errors;
end
$$;

-- 422 validation_failed with every error listed (capped at 100 in details).
create or replace function app.wm_raise_invalid(p_errors jsonb, p_code text default 'validation_failed')
returns void language plpgsql immutable as $$
begin
  if p_errors is null or jsonb_array_length(p_errors) = 0 then
    return;
  end if;
  perform app.raise_error(422, p_code,
    format('%s (%s error%s)', p_errors -> 0 ->> 'message', jsonb_array_length(p_errors),
           case when jsonb_array_length(p_errors) = 1 then '' else 's' end),
    jsonb_build_object('errors', (select jsonb_agg(e) from (
                                    select e from jsonb_array_elements(p_errors) e limit 100) s),
                       'error_count', jsonb_array_length(p_errors)));
end
$$;

-- Safety net for constraint errors the up-front checks did not anticipate.
create or replace function app.wm_raise_db_error(p_sqlstate text, p_constraint text, p_message text)
returns void language plpgsql immutable as $$
begin
  if p_sqlstate = '23505' then
    perform app.raise_error(409, 'already_exists', 'a record with these values already exists',
                            jsonb_build_object('constraint', p_constraint));
  end if;
  perform app.raise_error(422, 'validation_failed',
    coalesce('invalid value (' || p_constraint || ')', 'invalid value: ' || p_message),
    jsonb_build_object('constraint', p_constraint, 'sqlstate', p_sqlstate));
end
$$;

-- Cycles in a directed graph given as labelled edges (from depends on to). Iterative DFS
-- over integer ids in arrays: linear in nodes + edges, so a 5000-story import checks in
-- milliseconds, and a deep chain cannot blow the stack. Returns up to p_max cycles, each
-- a label path that starts and ends with the same node.
create or replace function app.wm_find_cycles(p_from text[], p_to text[], p_max integer default 10)
returns jsonb
language plpgsql immutable as $$
declare
  v_labels text[];
  v_n integer;
  v_src integer[];
  v_dst integer[];
  v_off integer[];
  v_color integer[];
  v_next integer[];
  v_depth integer[];
  v_stack integer[];
  v_sp integer;
  v_m integer;
  u integer; v integer; s integer; k integer;
  v_cycles jsonb := '[]'::jsonb;
  v_path jsonb;
begin
  if p_from is null or cardinality(p_from) = 0 then
    return v_cycles;
  end if;
  select array_agg(l order by l) into v_labels
    from (select unnest(p_from) l union select unnest(p_to)) x;
  v_n := cardinality(v_labels);
  -- Edges as integer pairs, sorted by source: compressed adjacency (v_off).
  select array_agg(f.i order by f.i, t.i), array_agg(t.i order by f.i, t.i)
    into v_src, v_dst
    from unnest(p_from, p_to) as e(a, b)
    join unnest(v_labels) with ordinality as f(l, i) on f.l = e.a
    join unnest(v_labels) with ordinality as t(l, i) on t.l = e.b;
  v_m := cardinality(v_src);
  v_off := array_fill(0, array[v_n + 1]);
  for k in 1..v_m loop
    v_off[v_src[k] + 1] := v_off[v_src[k] + 1] + 1;
  end loop;
  v_off[1] := 1;
  for k in 2..v_n + 1 loop
    v_off[k] := v_off[k] + v_off[k - 1];
  end loop;
  -- now edges of node u are v_dst[v_off[u] .. v_off[u+1]-1]
  v_color := array_fill(0, array[v_n]);
  v_next := array_fill(0, array[v_n]);
  v_depth := array_fill(0, array[v_n]);
  v_stack := array_fill(0, array[v_n]);
  for s in 1..v_n loop
    continue when v_color[s] <> 0;
    v_sp := 1; v_stack[1] := s; v_color[s] := 1; v_next[s] := v_off[s]; v_depth[s] := 1;
    while v_sp > 0 loop
      u := v_stack[v_sp];
      if v_next[u] < v_off[u + 1] then
        v := v_dst[v_next[u]];
        v_next[u] := v_next[u] + 1;
        if v_color[v] = 0 then
          v_color[v] := 1; v_next[v] := v_off[v];
          v_sp := v_sp + 1; v_stack[v_sp] := v; v_depth[v] := v_sp;
        elsif v_color[v] = 1 then
          -- back edge u -> v: the cycle is the stack from v up to u, then v again
          select jsonb_agg(v_labels[v_stack[j]] order by j) into v_path
            from generate_series(v_depth[v], v_sp) j;
          v_cycles := v_cycles || jsonb_build_array(v_path || to_jsonb(v_labels[v]));
          if jsonb_array_length(v_cycles) >= p_max then
            return v_cycles;
          end if;
        end if;
      else
        v_color[u] := 2;
        v_sp := v_sp - 1;
      end if;
    end loop;
  end loop;
  return v_cycles;
end
$$;

-- Human-readable cycle paths: 's:1.1' -> "story 1.1", 'e:2' -> "epic 2"; the internal
-- 'g:' nodes (an epic's prerequisite gate) are left out.
create or replace function app.wm_cycle_labels(p_cycles jsonb) returns jsonb
language sql immutable as $$
  select coalesce(jsonb_agg(
           (select jsonb_agg(case when left(n, 2) = 's:' then 'story ' || substr(n, 3)
                                  else 'epic ' || substr(n, 3) end order by i)
              from jsonb_array_elements_text(c) with ordinality as p(n, i)
             where left(n, 2) <> 'g:')), '[]'::jsonb)
    from jsonb_array_elements(p_cycles) c
$$;

-- The dependency graph of a project as labelled edges for cycle checks. A cycle may run
-- through both levels: a story waits for its dependencies and for every prerequisite epic
-- of its epic; an epic is done when all its stories (and its prerequisites) are. So the
-- graph has story -> story, epic -> its stories, story -> gate(its epic), epic -> its gate
-- and gate(epic) -> prerequisite epic edges.
-- Extra edges (already labelled) are added: the change being checked.
create or replace function app.wm_project_cycles(
  p_project_id uuid,
  p_extra_from text[] default '{}', p_extra_to text[] default '{}'
) returns jsonb
language sql stable as $$
  with edges(a, b) as (
    select 's:' || s.number, 's:' || d.number
      from app.story_dependencies sd
      join app.stories s on s.tenant_id = sd.tenant_id and s.id = sd.story_id
      join app.stories d on d.tenant_id = sd.tenant_id and d.id = sd.depends_on_story_id
     where s.project_id = p_project_id
    union all
    select 'e:' || e.number, 's:' || s.number
      from app.stories s join app.epics e on e.tenant_id = s.tenant_id and e.id = s.epic_id
     where s.project_id = p_project_id
    union all
    select 's:' || s.number, 'g:' || e.number
      from app.stories s join app.epics e on e.tenant_id = s.tenant_id and e.id = s.epic_id
     where s.project_id = p_project_id
       and exists (select 1 from app.epic_dependencies ed
                    where ed.tenant_id = e.tenant_id and ed.epic_id = e.id)
    union all
    select 'g:' || e.number, 'e:' || p.number
      from app.epic_dependencies ed
      join app.epics e on e.tenant_id = ed.tenant_id and e.id = ed.epic_id
      join app.epics p on p.tenant_id = ed.tenant_id and p.id = ed.depends_on_epic_id
     where e.project_id = p_project_id
    union all
    select 'e:' || e.number, 'g:' || e.number
      from app.epics e
     where e.project_id = p_project_id
       and exists (select 1 from app.epic_dependencies ed
                    where ed.tenant_id = e.tenant_id and ed.epic_id = e.id)
    union all
    select a, b from unnest(p_extra_from, p_extra_to) as x(a, b)
  )
  select app.wm_find_cycles(array_agg(a), array_agg(b)) from edges
$$;

-- Lookups that turn "not visible" (unknown, or another tenant's: RLS) into a 404.
create or replace function app.wm_project(p_id uuid, p_lock boolean default false)
returns app.projects language plpgsql volatile as $$
declare
  v app.projects;
begin
  if p_lock then
    select * into v from app.projects where id = p_id for no key update;
  else
    select * into v from app.projects where id = p_id;
  end if;
  if v.id is null then
    perform app.raise_error(404, 'project_not_found', 'project not found',
                            jsonb_build_object('project_id', p_id));
  end if;
  return v;
end
$$;

create or replace function app.wm_epic(p_id uuid) returns app.epics
language plpgsql stable as $$
declare
  v app.epics;
begin
  select * into v from app.epics where id = p_id;
  if v.id is null then
    perform app.raise_error(404, 'epic_not_found', 'epic not found',
                            jsonb_build_object('epic_id', p_id));
  end if;
  return v;
end
$$;

create or replace function app.wm_story(p_id uuid, p_param text default 'story_id')
returns app.stories language plpgsql stable as $$
declare
  v app.stories;
begin
  select * into v from app.stories where id = p_id;
  if v.id is null then
    perform app.raise_error(404, 'story_not_found', 'story not found',
                            jsonb_build_object(p_param, p_id));
  end if;
  return v;
end
$$;

create or replace function app.wm_project_json(p app.projects) returns jsonb
language sql stable as $$
  select jsonb_build_object('id', p.id, 'name', p.name, 'slug', p.slug,
    'repo_url', p.repo_url, 'description', p.description, 'status', p.status,
    'created_at', p.created_at, 'updated_at', p.updated_at)
$$;

create or replace function app.wm_epic_json(e app.epics) returns jsonb
language sql stable as $$
  select jsonb_build_object('id', e.id, 'project_id', e.project_id, 'number', e.number,
    'title', e.title, 'description', e.description, 'phase', e.phase,
    'position', e.position, 'created_at', e.created_at, 'updated_at', e.updated_at)
$$;

-- A story as JSON from its row plus the two joined values. Lists pass those in from one
-- set-based query: a per-row lookup would re-run the RLS tenant check (identity
-- resolution) for every row.
create or replace function app.wm_story_row_json(s app.stories, p_epic_number integer,
                                                 p_ac_count bigint) returns jsonb
language sql immutable as $$
  select jsonb_build_object('id', s.id, 'project_id', s.project_id, 'epic_id', s.epic_id,
    'epic_number', p_epic_number,
    'number', s.number, 'title', s.title, 'description', s.description,
    'estimated_hours', s.estimated_hours,
    'ac_count', coalesce(p_ac_count, 0),
    'agent_status', s.agent_status, 'verified_status', s.verified_status,
    'assigned_agent_id', s.assigned_agent_id,
    'contracted_by_agent_id', s.contracted_by_agent_id,
    'reported_by_agent_id', s.reported_by_agent_id,
    'verified_by_agent_id', s.verified_by_agent_id,
    'backfill_reason', s.backfill_reason,
    'contracted_at', s.contracted_at, 'claimed_at', s.claimed_at,
    'started_at', s.started_at, 'reported_done_at', s.reported_done_at,
    'verified_at', s.verified_at, 'rejected_at', s.rejected_at,
    'created_at', s.created_at, 'updated_at', s.updated_at)
$$;

create or replace function app.wm_story_json(s app.stories) returns jsonb
language sql stable as $$
  select app.wm_story_row_json(s,
    (select e.number from app.epics e where e.tenant_id = s.tenant_id and e.id = s.epic_id),
    (select count(*) from app.acceptance_criteria c
      where c.tenant_id = s.tenant_id and c.story_id = s.id))
$$;

create or replace function app.wm_criteria_json(p_tenant_id uuid, p_story_id uuid) returns jsonb
language sql stable as $$
  select coalesce(jsonb_agg(jsonb_build_object('id', c.ac_id, 'description', c.description,
                                               'status', c.status, 'position', c.position,
                                               'updated_at', c.updated_at)
                            order by c.position, c.ac_id), '[]'::jsonb)
    from app.acceptance_criteria c
   where c.tenant_id = p_tenant_id and c.story_id = p_story_id
$$;

-- Replace a story's criteria by a new list, matching by criterion id: a kept id keeps its
-- status, new ids start pending, ids no longer listed are removed. Returns true if anything
-- changed.
create or replace function app.wm_sync_criteria(p_tenant_id uuid, p_story_id uuid, p_criteria jsonb)
returns boolean language plpgsql volatile as $$
declare
  v_deleted integer;
  v_upserted integer;
begin
  delete from app.acceptance_criteria c
   where c.tenant_id = p_tenant_id and c.story_id = p_story_id
     and c.ac_id not in (select n.ac_id from app.wm_criteria(p_criteria) n);
  get diagnostics v_deleted = row_count;
  insert into app.acceptance_criteria as c (tenant_id, story_id, ac_id, position, description)
  select p_tenant_id, p_story_id, n.ac_id, n.position, n.description
    from app.wm_criteria(p_criteria) n
  on conflict (tenant_id, story_id, ac_id) do update
     set position = excluded.position, description = excluded.description, updated_at = now()
   where (c.position, c.description) is distinct from (excluded.position, excluded.description);
  get diagnostics v_upserted = row_count;
  return v_deleted + v_upserted > 0;
end
$$;

-- What keeps a story from being claimed: unverified story dependencies and prerequisite
-- epics (of the story's epic) that still have unverified stories. [] when nothing blocks.
-- The state machine's claim can reuse it.
create or replace function app.story_blockers(p_tenant_id uuid, p_story_id uuid) returns jsonb
language sql stable as $$
  select coalesce(jsonb_agg(b order by b ->> 'type' desc, b ->> 'number'), '[]'::jsonb) from (
    select jsonb_build_object('type', 'story', 'id', d.id, 'number', d.number,
             'title', d.title, 'agent_status', d.agent_status,
             'verified_status', d.verified_status) b
      from app.story_dependencies sd
      join app.stories d on d.tenant_id = sd.tenant_id and d.id = sd.depends_on_story_id
     where sd.tenant_id = p_tenant_id and sd.story_id = p_story_id
       and d.verified_status <> 'verified'
    union all
    select jsonb_build_object('type', 'epic', 'id', pe.id, 'number', pe.number,
             'title', pe.title, 'unverified_stories', u.n)
      from app.stories s
      join app.epic_dependencies ed on ed.tenant_id = s.tenant_id and ed.epic_id = s.epic_id
      join app.epics pe on pe.tenant_id = ed.tenant_id and pe.id = ed.depends_on_epic_id
      cross join lateral (select count(*) n from app.stories x
                           where x.tenant_id = pe.tenant_id and x.epic_id = pe.id
                             and x.verified_status <> 'verified') u
     where s.tenant_id = p_tenant_id and s.id = p_story_id and u.n > 0
  ) x
$$;

-- Counts per status, percent verified and estimated hours of a project or one epic.
create or replace function app.wm_progress(p_tenant_id uuid, p_project_id uuid, p_epic_id uuid)
returns jsonb language sql stable as $$
  select jsonb_build_object(
    'stories_total', count(*),
    'agent_status', jsonb_build_object(
      'pending', count(*) filter (where agent_status = 'pending'),
      'contracted', count(*) filter (where agent_status = 'contracted'),
      'assigned', count(*) filter (where agent_status = 'assigned'),
      'implementing', count(*) filter (where agent_status = 'implementing'),
      'reported_done', count(*) filter (where agent_status = 'reported_done')),
    'verified_status', jsonb_build_object(
      'unverified', count(*) filter (where verified_status = 'unverified'),
      'verified', count(*) filter (where verified_status = 'verified'),
      'rejected', count(*) filter (where verified_status = 'rejected')),
    'percent_verified', coalesce(round(100.0 * count(*) filter (where verified_status = 'verified')
                                       / nullif(count(*), 0), 1), 0),
    'estimated_hours', jsonb_build_object(
      'total', coalesce(sum(estimated_hours), 0),
      'done', coalesce(sum(estimated_hours) filter (where verified_status = 'verified'), 0)))
    from app.stories
   where tenant_id = p_tenant_id and project_id = p_project_id
     and (p_epic_id is null or epic_id = p_epic_id)
$$;

-- ---------------------------------------------------------------------------------------
-- Views (security_invoker: RLS of the caller applies; grants in grants_work_model.sql)
-- ---------------------------------------------------------------------------------------
create or replace view api.projects with (security_invoker = true) as
  select p.id, p.name, p.slug, p.repo_url, p.description, p.status, p.created_at, p.updated_at
    from app.projects p;

create or replace view api.epics with (security_invoker = true) as
  select e.id, e.project_id, e.number, e.title, e.description, e.phase, e.position,
         e.created_at, e.updated_at
    from app.epics e;

create or replace view api.stories with (security_invoker = true) as
  select s.id, s.project_id, s.epic_id, e.number as epic_number, s.number, s.title,
         s.description, s.estimated_hours, s.agent_status, s.verified_status,
         s.assigned_agent_id, s.contracted_by_agent_id, s.reported_by_agent_id,
         s.verified_by_agent_id, s.backfill_reason,
         (select count(*) from app.acceptance_criteria c
           where c.tenant_id = s.tenant_id and c.story_id = s.id) as ac_count,
         s.contracted_at, s.claimed_at, s.started_at, s.reported_done_at, s.verified_at,
         s.rejected_at, s.created_at, s.updated_at
    from app.stories s
    join app.epics e on e.tenant_id = s.tenant_id and e.id = s.epic_id;

create or replace view api.acceptance_criteria with (security_invoker = true) as
  select c.story_id, c.ac_id, c.position, c.description, c.status, c.updated_at
    from app.acceptance_criteria c;

create or replace view api.story_dependencies with (security_invoker = true) as
  select d.story_id, d.depends_on_story_id, d.created_at
    from app.story_dependencies d;

create or replace view api.epic_dependencies with (security_invoker = true) as
  select d.epic_id, d.depends_on_epic_id, d.created_at
    from app.epic_dependencies d;

create or replace view api.artifacts with (security_invoker = true) as
  select a.id, a.story_id, a.artifact_type, a.path, a.commit_sha, a.details,
         a.reported_by_agent_id, a.reported_by_key_id, a.created_at
    from app.artifacts a;

-- ---------------------------------------------------------------------------------------
-- Projects
-- ---------------------------------------------------------------------------------------
create or replace function app.wm_project_errors(
  p_name text, p_slug text, p_repo_url text, p_description text, p_status text, p_new boolean
) returns jsonb language plpgsql immutable as $$
declare
  v_errors jsonb := '[]'::jsonb;
begin
  if p_new or p_name is not null then
    if p_name is null or btrim(p_name) = '' then
      v_errors := v_errors || app.wm_err('name', 'name is required');
    elsif length(p_name) > 200 then
      v_errors := v_errors || app.wm_err('name', 'name is longer than 200 characters');
    end if;
  end if;
  if p_new and (p_slug is null or p_slug !~ '^[a-z0-9][a-z0-9._-]{0,99}$') then
    v_errors := v_errors || app.wm_err('slug',
      'slug must be 1-100 lowercase letters, digits, ".", "_" or "-", starting with a letter or digit');
  end if;
  if length(p_repo_url) > 2000 then
    v_errors := v_errors || app.wm_err('repo_url', 'repo_url is longer than 2000 characters');
  end if;
  if length(p_description) > 20000 then
    v_errors := v_errors || app.wm_err('description', 'description is longer than 20000 characters');
  end if;
  if p_status is not null and p_status not in ('active', 'archived') then
    v_errors := v_errors || app.wm_err('status', 'status must be active or archived');
  end if;
  return v_errors;
end
$$;

create or replace function api.create_project(
  name text, slug text, repo_url text default null, description text default null
) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  v_me app.identity := app.require_identity();
  v_p app.projects;
  v_state text; v_constraint text; v_msg text;
begin
  perform app.require_role(v_me, array['user', 'orchestrator'], 'create_project');
  perform app.wm_raise_invalid(app.wm_project_errors(create_project.name, create_project.slug,
    create_project.repo_url, create_project.description, null, true));
  begin
    insert into app.projects (tenant_id, name, slug, repo_url, description)
    values (v_me.tenant_id, create_project.name, create_project.slug,
            nullif(create_project.repo_url, ''), create_project.description)
    returning * into v_p;
  exception when unique_violation then
    perform app.raise_error(409, 'project_slug_taken',
      format('a project with slug %L already exists', create_project.slug),
      jsonb_build_object('slug', create_project.slug));
  when check_violation or not_null_violation then
    get stacked diagnostics v_state = returned_sqlstate, v_constraint = constraint_name,
                            v_msg = message_text;
    perform app.wm_raise_db_error(v_state, v_constraint, v_msg);
  end;
  perform app.emit_event(v_me.tenant_id, 'project.created',
    jsonb_build_object('project_id', v_p.id, 'slug', v_p.slug), v_p.id, 'project', v_p.id);
  perform set_config('response.status', '201', true);
  return app.wm_project_json(v_p);
end
$$;

create or replace function api.update_project(
  project_id uuid, name text default null, repo_url text default null,
  description text default null, status text default null
) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  v_me app.identity := app.require_identity();
  v_p app.projects;
  v_state text; v_constraint text; v_msg text;
begin
  perform app.require_role(v_me, array['user', 'orchestrator'], 'update_project');
  v_p := app.wm_project(update_project.project_id, true);
  perform app.wm_raise_invalid(app.wm_project_errors(update_project.name, null,
    update_project.repo_url, update_project.description, update_project.status, false));
  begin
    update app.projects p
       set name = coalesce(update_project.name, p.name),
           repo_url = coalesce(update_project.repo_url, p.repo_url),
           description = coalesce(update_project.description, p.description),
           status = coalesce(update_project.status, p.status),
           updated_at = now()
     where p.tenant_id = v_p.tenant_id and p.id = v_p.id
    returning * into v_p;
  exception when check_violation or not_null_violation then
    get stacked diagnostics v_state = returned_sqlstate, v_constraint = constraint_name,
                            v_msg = message_text;
    perform app.wm_raise_db_error(v_state, v_constraint, v_msg);
  end;
  return app.wm_project_json(v_p);
end
$$;

create or replace function api.delete_project(project_id uuid) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  v_me app.identity := app.require_identity();
  v_p app.projects;
begin
  perform app.require_role(v_me, array['user'], 'delete_project');
  v_p := app.wm_project(delete_project.project_id, true);
  delete from app.projects p where p.tenant_id = v_p.tenant_id and p.id = v_p.id;
  perform app.emit_event(v_me.tenant_id, 'project.deleted',
    jsonb_build_object('project_id', v_p.id, 'slug', v_p.slug), null, 'project', v_p.id);
  return jsonb_build_object('deleted', true, 'id', v_p.id, 'slug', v_p.slug);
end
$$;

create or replace function api.get_project(project_id uuid) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  v_me app.identity := app.require_identity();
  v_p app.projects;
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'get_project');
  v_p := app.wm_project(get_project.project_id);
  return app.wm_project_json(v_p) || jsonb_build_object(
    'epics_count', (select count(*) from app.epics e
                     where e.tenant_id = v_p.tenant_id and e.project_id = v_p.id),
    'stories_count', (select count(*) from app.stories s
                       where s.tenant_id = v_p.tenant_id and s.project_id = v_p.id));
end
$$;

create or replace function api.list_projects(
  status text default null, "limit" integer default 100, "offset" integer default 0
) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  v_me app.identity := app.require_identity();
  v_total bigint;
  v_data jsonb;
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'list_projects');
  if list_projects."limit" is null or list_projects."limit" not between 1 and 500
     or list_projects."offset" is null or list_projects."offset" < 0 then
    perform app.raise_error(422, 'invalid_pagination',
      'limit must be between 1 and 500 and offset must be 0 or more',
      jsonb_build_object('limit', list_projects."limit", 'offset', list_projects."offset"));
  end if;
  select count(*) into v_total from app.projects p
   where list_projects.status is null or p.status = list_projects.status;
  select coalesce(jsonb_agg(app.wm_project_json(p) order by p.created_at, p.id), '[]'::jsonb)
    into v_data
    from (select * from app.projects p
           where list_projects.status is null or p.status = list_projects.status
           order by p.created_at, p.id
           limit list_projects."limit" offset list_projects."offset") p;
  return jsonb_build_object('data', v_data, 'meta', jsonb_build_object(
    'limit', list_projects."limit", 'offset', list_projects."offset", 'total', v_total,
    'has_more', list_projects."offset" + jsonb_array_length(v_data) < v_total));
end
$$;

-- ---------------------------------------------------------------------------------------
-- Epics
-- ---------------------------------------------------------------------------------------
create or replace function api.create_epic(
  project_id uuid, number integer, title text, description text default null,
  phase text default null, "position" integer default null
) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  v_me app.identity := app.require_identity();
  v_p app.projects;
  v_e app.epics;
  v_state text; v_constraint text; v_msg text;
begin
  perform app.require_role(v_me, array['user', 'orchestrator'], 'create_epic');
  v_p := app.wm_project(create_epic.project_id);
  perform app.wm_raise_invalid(app.wm_epic_errors(jsonb_strip_nulls(jsonb_build_object(
    'number', create_epic.number, 'title', create_epic.title,
    'description', create_epic.description, 'phase', create_epic.phase)), '', true)
    || case when create_epic.title is null then jsonb_build_array(app.wm_err('title', 'title is required'))
            else '[]'::jsonb end);
  begin
    insert into app.epics (tenant_id, project_id, number, title, description, phase, position)
    values (v_me.tenant_id, v_p.id, create_epic.number, create_epic.title,
            create_epic.description, create_epic.phase,
            coalesce(create_epic."position", create_epic.number))
    returning * into v_e;
  exception when unique_violation then
    perform app.raise_error(409, 'epic_number_taken',
      format('epic %s already exists in this project', create_epic.number),
      jsonb_build_object('number', create_epic.number, 'project_id', v_p.id));
  when check_violation or not_null_violation then
    get stacked diagnostics v_state = returned_sqlstate, v_constraint = constraint_name,
                            v_msg = message_text;
    perform app.wm_raise_db_error(v_state, v_constraint, v_msg);
  end;
  perform set_config('response.status', '201', true);
  return app.wm_epic_json(v_e);
end
$$;

create or replace function api.update_epic(
  epic_id uuid, number integer default null, title text default null,
  description text default null, phase text default null, "position" integer default null
) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  v_me app.identity := app.require_identity();
  v_e app.epics;
  v_state text; v_constraint text; v_msg text;
begin
  perform app.require_role(v_me, array['user', 'orchestrator'], 'update_epic');
  v_e := app.wm_epic(update_epic.epic_id);
  perform app.wm_raise_invalid(app.wm_epic_errors(jsonb_strip_nulls(jsonb_build_object(
    'number', coalesce(update_epic.number, v_e.number), 'title', update_epic.title,
    'description', update_epic.description, 'phase', update_epic.phase)), '', false));
  begin
    update app.epics e
       set number = coalesce(update_epic.number, e.number),
           title = coalesce(update_epic.title, e.title),
           description = coalesce(update_epic.description, e.description),
           phase = coalesce(update_epic.phase, e.phase),
           position = coalesce(update_epic."position", e.position),
           updated_at = now()
     where e.tenant_id = v_e.tenant_id and e.id = v_e.id
    returning * into v_e;
  exception when unique_violation then
    perform app.raise_error(409, 'epic_number_taken',
      format('epic %s already exists in this project', update_epic.number),
      jsonb_build_object('number', update_epic.number, 'project_id', v_e.project_id));
  when check_violation or not_null_violation then
    get stacked diagnostics v_state = returned_sqlstate, v_constraint = constraint_name,
                            v_msg = message_text;
    perform app.wm_raise_db_error(v_state, v_constraint, v_msg);
  end;
  return app.wm_epic_json(v_e);
end
$$;

create or replace function api.delete_epic(epic_id uuid) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  v_me app.identity := app.require_identity();
  v_e app.epics;
  v_stories bigint;
begin
  perform app.require_role(v_me, array['user'], 'delete_epic');
  v_e := app.wm_epic(delete_epic.epic_id);
  perform app.wm_project(v_e.project_id, true);
  select count(*) into v_stories from app.stories s
   where s.tenant_id = v_e.tenant_id and s.epic_id = v_e.id;
  delete from app.epics e where e.tenant_id = v_e.tenant_id and e.id = v_e.id;
  return jsonb_build_object('deleted', true, 'id', v_e.id, 'number', v_e.number,
                            'stories_deleted', v_stories);
end
$$;

create or replace function api.get_epic(epic_id uuid) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  v_me app.identity := app.require_identity();
  v_e app.epics;
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'get_epic');
  v_e := app.wm_epic(get_epic.epic_id);
  return app.wm_epic_json(v_e) || jsonb_build_object(
    'depends_on', (select coalesce(jsonb_agg(jsonb_build_object('id', p.id, 'number', p.number,
                                                               'title', p.title)
                                             order by p.number), '[]'::jsonb)
                     from app.epic_dependencies d
                     join app.epics p on p.tenant_id = d.tenant_id and p.id = d.depends_on_epic_id
                    where d.tenant_id = v_e.tenant_id and d.epic_id = v_e.id),
    'progress', app.wm_progress(v_e.tenant_id, v_e.project_id, v_e.id));
end
$$;

-- ---------------------------------------------------------------------------------------
-- Stories and acceptance criteria
-- ---------------------------------------------------------------------------------------
create or replace function api.create_story(
  project_id uuid, epic_id uuid, number text, title text, description text default null,
  acceptance_criteria jsonb default '[]'::jsonb, estimated_hours numeric default null
) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  v_me app.identity := app.require_identity();
  v_p app.projects;
  v_e app.epics;
  v_s app.stories;
  v_state text; v_constraint text; v_msg text;
begin
  perform app.require_role(v_me, array['user', 'orchestrator'], 'create_story');
  v_p := app.wm_project(create_story.project_id);
  v_e := app.wm_epic(create_story.epic_id);
  if v_e.project_id <> v_p.id then
    perform app.raise_error(422, 'epic_not_in_project', 'the epic belongs to another project',
      jsonb_build_object('epic_id', v_e.id, 'project_id', v_p.id));
  end if;
  perform app.wm_raise_invalid(app.wm_story_errors(jsonb_build_object(
    'number', create_story.number, 'title', create_story.title,
    'description', create_story.description,
    'estimated_hours', create_story.estimated_hours,
    'acceptance_criteria', coalesce(create_story.acceptance_criteria, '[]'::jsonb)), '', true));
  begin
    insert into app.stories (tenant_id, project_id, epic_id, number, title, description,
                             estimated_hours)
    values (v_me.tenant_id, v_p.id, v_e.id, create_story.number, create_story.title,
            create_story.description, create_story.estimated_hours)
    returning * into v_s;
  exception when unique_violation then
    perform app.raise_error(409, 'story_number_taken',
      format('story %s already exists in this project', create_story.number),
      jsonb_build_object('number', create_story.number, 'project_id', v_p.id));
  when check_violation or not_null_violation or numeric_value_out_of_range then
    get stacked diagnostics v_state = returned_sqlstate, v_constraint = constraint_name,
                            v_msg = message_text;
    perform app.wm_raise_db_error(v_state, v_constraint, v_msg);
  end;
  perform app.wm_sync_criteria(v_me.tenant_id, v_s.id, create_story.acceptance_criteria);
  perform set_config('response.status', '201', true);
  return app.wm_story_json(v_s)
         || jsonb_build_object('acceptance_criteria', app.wm_criteria_json(v_me.tenant_id, v_s.id));
end
$$;

-- Changes content only: title, description, estimated hours, criteria. Status fields are
-- the state machine's alone.
create or replace function api.update_story(
  story_id uuid, title text default null, description text default null,
  estimated_hours numeric default null, acceptance_criteria jsonb default null
) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  v_me app.identity := app.require_identity();
  v_s app.stories;
  v_state text; v_constraint text; v_msg text;
begin
  perform app.require_role(v_me, array['user', 'orchestrator'], 'update_story');
  v_s := app.wm_story(update_story.story_id);
  perform app.wm_raise_invalid(app.wm_story_errors(jsonb_strip_nulls(jsonb_build_object(
    'number', v_s.number, 'title', update_story.title,
    'description', update_story.description,
    'estimated_hours', update_story.estimated_hours))
    || case when update_story.acceptance_criteria is null then '{}'::jsonb
            else jsonb_build_object('acceptance_criteria', update_story.acceptance_criteria) end,
    '', false));
  begin
    update app.stories s
       set title = coalesce(update_story.title, s.title),
           description = coalesce(update_story.description, s.description),
           estimated_hours = coalesce(update_story.estimated_hours, s.estimated_hours),
           updated_at = now()
     where s.tenant_id = v_s.tenant_id and s.id = v_s.id
    returning * into v_s;
  exception when check_violation or not_null_violation or numeric_value_out_of_range then
    get stacked diagnostics v_state = returned_sqlstate, v_constraint = constraint_name,
                            v_msg = message_text;
    perform app.wm_raise_db_error(v_state, v_constraint, v_msg);
  end;
  if update_story.acceptance_criteria is not null then
    perform app.wm_sync_criteria(v_s.tenant_id, v_s.id, update_story.acceptance_criteria);
  end if;
  return app.wm_story_json(v_s)
         || jsonb_build_object('acceptance_criteria', app.wm_criteria_json(v_s.tenant_id, v_s.id));
end
$$;

create or replace function api.delete_story(story_id uuid) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  v_me app.identity := app.require_identity();
  v_s app.stories;
begin
  perform app.require_role(v_me, array['user'], 'delete_story');
  v_s := app.wm_story(delete_story.story_id);
  delete from app.stories s where s.tenant_id = v_s.tenant_id and s.id = v_s.id;
  return jsonb_build_object('deleted', true, 'id', v_s.id, 'number', v_s.number);
end
$$;

-- The story with its criteria, dependencies, dependents, blockers and the latest review
-- and verification result.
create or replace function api.get_story(story_id uuid) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  v_me app.identity := app.require_identity();
  v_s app.stories;
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'get_story');
  v_s := app.wm_story(get_story.story_id);
  return app.wm_story_json(v_s) || jsonb_build_object(
    'acceptance_criteria', app.wm_criteria_json(v_s.tenant_id, v_s.id),
    'dependencies', (
      select coalesce(jsonb_agg(jsonb_build_object('id', d.id, 'number', d.number,
               'title', d.title, 'agent_status', d.agent_status,
               'verified_status', d.verified_status) order by app.wm_number_key(d.number)),
             '[]'::jsonb)
        from app.story_dependencies sd
        join app.stories d on d.tenant_id = sd.tenant_id and d.id = sd.depends_on_story_id
       where sd.tenant_id = v_s.tenant_id and sd.story_id = v_s.id),
    'dependents', (
      select coalesce(jsonb_agg(jsonb_build_object('id', d.id, 'number', d.number,
               'title', d.title, 'agent_status', d.agent_status,
               'verified_status', d.verified_status) order by app.wm_number_key(d.number)),
             '[]'::jsonb)
        from app.story_dependencies sd
        join app.stories d on d.tenant_id = sd.tenant_id and d.id = sd.story_id
       where sd.tenant_id = v_s.tenant_id and sd.depends_on_story_id = v_s.id),
    'blockers', app.story_blockers(v_s.tenant_id, v_s.id),
    'artifacts_count', (select count(*) from app.artifacts a
                         where a.tenant_id = v_s.tenant_id and a.story_id = v_s.id),
    'latest_review', (
      select jsonb_build_object('id', r.id, 'review_type', r.review_type,
               'reviewer_agent_id', r.reviewer_agent_id, 'findings_count', r.findings_count,
               'fixes_count', r.fixes_count, 'disproved_count', r.disproved_count,
               'summary', r.summary, 'completed_at', r.completed_at)
        from app.reviews r where r.tenant_id = v_s.tenant_id and r.story_id = v_s.id
       order by r.completed_at desc, r.id limit 1),
    'latest_verification', (
      select jsonb_build_object('id', v.id, 'iteration', v.iteration, 'result', v.result,
               'summary', v.summary, 'review_type', v.review_type,
               'verifier_agent_id', v.verifier_agent_id, 'created_at', v.created_at)
        from app.verification_results v
       where v.tenant_id = v_s.tenant_id and v.story_id = v_s.id
       order by v.iteration desc limit 1));
end
$$;

create or replace function api.update_acceptance_criterion(story_id uuid, ac_id text, status text)
returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  v_me app.identity := app.require_identity();
  v_s app.stories;
  v_c app.acceptance_criteria;
begin
  perform app.require_role(v_me, array['user', 'orchestrator'], 'update_acceptance_criterion');
  v_s := app.wm_story(update_acceptance_criterion.story_id);
  if update_acceptance_criterion.status is null
     or update_acceptance_criterion.status not in ('pending', 'verified', 'failed') then
    perform app.raise_error(422, 'validation_failed',
      'status must be pending, verified or failed',
      jsonb_build_object('errors', jsonb_build_array(app.wm_err('status',
        'status must be pending, verified or failed'))));
  end if;
  update app.acceptance_criteria c
     set status = update_acceptance_criterion.status, updated_at = now()
   where c.tenant_id = v_s.tenant_id and c.story_id = v_s.id
     and c.ac_id = update_acceptance_criterion.ac_id
  returning * into v_c;
  if v_c.ac_id is null then
    perform app.raise_error(404, 'criterion_not_found',
      format('story %s has no acceptance criterion %L', v_s.number,
             update_acceptance_criterion.ac_id),
      jsonb_build_object('story_id', v_s.id, 'ac_id', update_acceptance_criterion.ac_id));
  end if;
  return jsonb_build_object('story_id', v_s.id, 'id', v_c.ac_id, 'description', v_c.description,
                            'status', v_c.status, 'position', v_c.position,
                            'updated_at', v_c.updated_at);
end
$$;

create or replace function api.list_acceptance_criteria(story_id uuid) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  v_me app.identity := app.require_identity();
  v_s app.stories;
  v_data jsonb;
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'list_acceptance_criteria');
  v_s := app.wm_story(list_acceptance_criteria.story_id);
  v_data := app.wm_criteria_json(v_s.tenant_id, v_s.id);
  return jsonb_build_object('data', v_data, 'meta', jsonb_build_object(
    'total', jsonb_array_length(v_data), 'has_more', false));
end
$$;

-- ---------------------------------------------------------------------------------------
-- Dependencies (cycles refused, across story and epic levels; same project only)
-- ---------------------------------------------------------------------------------------
create or replace function app.wm_raise_cycle(p_cycles jsonb) returns void
language plpgsql immutable as $$
declare
  v_paths jsonb;
begin
  -- Plain story or epic cycles first: they are the easiest to read and fix.
  select coalesce(jsonb_agg(c order by (c::text like '%story%' and c::text like '%epic%'),
                            jsonb_array_length(c)), '[]'::jsonb)
    into v_paths from jsonb_array_elements(app.wm_cycle_labels(p_cycles)) c;
  if jsonb_array_length(p_cycles) > 0 then
    perform app.raise_error(422, 'dependency_cycle',
      'dependency cycle: ' || (select string_agg(n, ' -> ' order by i)
                                 from jsonb_array_elements_text(v_paths -> 0)
                                      with ordinality as p(n, i)),
      jsonb_build_object('cycles', v_paths),
      'remove one dependency of the cycle');
  end if;
end
$$;

create or replace function api.add_story_dependency(story_id uuid, depends_on_story_id uuid)
returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  v_me app.identity := app.require_identity();
  v_s app.stories;
  v_d app.stories;
  v_created boolean;
begin
  perform app.require_role(v_me, array['user', 'orchestrator'], 'add_story_dependency');
  v_s := app.wm_story(add_story_dependency.story_id);
  v_d := app.wm_story(add_story_dependency.depends_on_story_id, 'depends_on_story_id');
  if v_s.project_id <> v_d.project_id then
    perform app.raise_error(422, 'cross_project_dependency',
      'a story can only depend on a story of the same project',
      jsonb_build_object('story_id', v_s.id, 'depends_on_story_id', v_d.id));
  end if;
  -- One dependency change per project at a time, so two concurrent additions cannot
  -- close a cycle that neither saw.
  perform app.wm_project(v_s.project_id, true);
  if exists (select 1 from app.story_dependencies sd
              where sd.tenant_id = v_s.tenant_id and sd.story_id = v_s.id
                and sd.depends_on_story_id = v_d.id) then
    v_created := false;
  else
    perform app.wm_raise_cycle(app.wm_project_cycles(v_s.project_id,
      array['s:' || v_s.number], array['s:' || v_d.number]));
    insert into app.story_dependencies (tenant_id, story_id, depends_on_story_id)
    values (v_s.tenant_id, v_s.id, v_d.id);
    v_created := true;
    perform set_config('response.status', '201', true);
  end if;
  return jsonb_build_object('story_id', v_s.id, 'story_number', v_s.number,
    'depends_on_story_id', v_d.id, 'depends_on_number', v_d.number, 'created', v_created);
end
$$;

create or replace function api.remove_story_dependency(story_id uuid, depends_on_story_id uuid)
returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  v_me app.identity := app.require_identity();
  v_s app.stories;
  v_n integer;
begin
  perform app.require_role(v_me, array['user', 'orchestrator'], 'remove_story_dependency');
  v_s := app.wm_story(remove_story_dependency.story_id);
  perform app.wm_story(remove_story_dependency.depends_on_story_id, 'depends_on_story_id');
  delete from app.story_dependencies sd
   where sd.tenant_id = v_s.tenant_id and sd.story_id = v_s.id
     and sd.depends_on_story_id = remove_story_dependency.depends_on_story_id;
  get diagnostics v_n = row_count;
  if v_n = 0 then
    perform app.raise_error(404, 'dependency_not_found', 'no such dependency',
      jsonb_build_object('story_id', v_s.id,
                         'depends_on_story_id', remove_story_dependency.depends_on_story_id));
  end if;
  return jsonb_build_object('removed', true, 'story_id', v_s.id,
                            'depends_on_story_id', remove_story_dependency.depends_on_story_id);
end
$$;

create or replace function api.add_epic_dependency(epic_id uuid, depends_on_epic_id uuid)
returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  v_me app.identity := app.require_identity();
  v_e app.epics;
  v_d app.epics;
  v_created boolean;
begin
  perform app.require_role(v_me, array['user', 'orchestrator'], 'add_epic_dependency');
  v_e := app.wm_epic(add_epic_dependency.epic_id);
  select * into v_d from app.epics e where e.id = add_epic_dependency.depends_on_epic_id;
  if v_d.id is null then
    perform app.raise_error(404, 'epic_not_found', 'epic not found',
      jsonb_build_object('depends_on_epic_id', add_epic_dependency.depends_on_epic_id));
  end if;
  if v_e.project_id <> v_d.project_id then
    perform app.raise_error(422, 'cross_project_dependency',
      'an epic can only depend on an epic of the same project',
      jsonb_build_object('epic_id', v_e.id, 'depends_on_epic_id', v_d.id));
  end if;
  perform app.wm_project(v_e.project_id, true);
  if exists (select 1 from app.epic_dependencies ed
              where ed.tenant_id = v_e.tenant_id and ed.epic_id = v_e.id
                and ed.depends_on_epic_id = v_d.id) then
    v_created := false;
  else
    -- The new edge: stories of the epic wait for its gate, the gate waits for the epic.
    perform app.wm_raise_cycle(app.wm_project_cycles(v_e.project_id,
      array['g:' || v_e.number, 'e:' || v_e.number]
        || array(select 's:' || s.number from app.stories s
                  where s.tenant_id = v_e.tenant_id and s.epic_id = v_e.id),
      array['e:' || v_d.number, 'g:' || v_e.number]
        || array(select 'g:' || v_e.number from app.stories s
                  where s.tenant_id = v_e.tenant_id and s.epic_id = v_e.id)));
    insert into app.epic_dependencies (tenant_id, epic_id, depends_on_epic_id)
    values (v_e.tenant_id, v_e.id, v_d.id);
    v_created := true;
    perform set_config('response.status', '201', true);
  end if;
  return jsonb_build_object('epic_id', v_e.id, 'epic_number', v_e.number,
    'depends_on_epic_id', v_d.id, 'depends_on_number', v_d.number, 'created', v_created);
end
$$;

create or replace function api.remove_epic_dependency(epic_id uuid, depends_on_epic_id uuid)
returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  v_me app.identity := app.require_identity();
  v_e app.epics;
  v_n integer;
begin
  perform app.require_role(v_me, array['user', 'orchestrator'], 'remove_epic_dependency');
  v_e := app.wm_epic(remove_epic_dependency.epic_id);
  delete from app.epic_dependencies ed
   where ed.tenant_id = v_e.tenant_id and ed.epic_id = v_e.id
     and ed.depends_on_epic_id = remove_epic_dependency.depends_on_epic_id;
  get diagnostics v_n = row_count;
  if v_n = 0 then
    perform app.raise_error(404, 'dependency_not_found', 'no such dependency',
      jsonb_build_object('epic_id', v_e.id,
                         'depends_on_epic_id', remove_epic_dependency.depends_on_epic_id));
  end if;
  return jsonb_build_object('removed', true, 'epic_id', v_e.id,
                            'depends_on_epic_id', remove_epic_dependency.depends_on_epic_id);
end
$$;

-- ---------------------------------------------------------------------------------------
-- Artifacts
-- ---------------------------------------------------------------------------------------
create or replace function app.wm_artifact_json(a app.artifacts) returns jsonb
language sql stable as $$
  select jsonb_build_object('id', a.id, 'story_id', a.story_id,
    'artifact_type', a.artifact_type, 'path', a.path, 'commit_sha', a.commit_sha,
    'details', a.details, 'reported_by_agent_id', a.reported_by_agent_id,
    'reported_by_key_id', a.reported_by_key_id, 'created_at', a.created_at)
$$;

create or replace function api.report_artifact(
  story_id uuid, artifact_type text, path text default null, commit_sha text default null,
  details jsonb default '{}'::jsonb
) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  v_me app.identity := app.require_identity();
  v_s app.stories;
  v_a app.artifacts;
  v_errors jsonb := '[]'::jsonb;
  v_state text; v_constraint text; v_msg text;
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'report_artifact');
  v_s := app.wm_story(report_artifact.story_id);
  if report_artifact.artifact_type is null or btrim(report_artifact.artifact_type) = ''
     or length(report_artifact.artifact_type) > 100 then
    v_errors := v_errors || app.wm_err('artifact_type', 'artifact_type is required (1-100 characters)');
  end if;
  if length(report_artifact.path) > 2000 then
    v_errors := v_errors || app.wm_err('path', 'path is longer than 2000 characters');
  end if;
  if report_artifact.commit_sha is not null and report_artifact.commit_sha !~ '^[0-9a-fA-F]{7,64}$' then
    v_errors := v_errors || app.wm_err('commit_sha', 'commit_sha must be 7-64 hex digits');
  end if;
  if report_artifact.details is not null and jsonb_typeof(report_artifact.details) <> 'object' then
    v_errors := v_errors || app.wm_err('details', 'details must be a JSON object');
  elsif pg_column_size(report_artifact.details) > 65536 then
    v_errors := v_errors || app.wm_err('details', 'details is larger than 64 KiB');
  end if;
  perform app.wm_raise_invalid(v_errors);
  begin
    insert into app.artifacts (tenant_id, story_id, artifact_type, path, commit_sha, details,
                               reported_by_agent_id, reported_by_key_id)
    values (v_s.tenant_id, v_s.id, report_artifact.artifact_type, report_artifact.path,
            report_artifact.commit_sha, coalesce(report_artifact.details, '{}'::jsonb),
            v_me.agent_id, v_me.key_id)
    returning * into v_a;
  exception when check_violation or not_null_violation then
    get stacked diagnostics v_state = returned_sqlstate, v_constraint = constraint_name,
                            v_msg = message_text;
    perform app.wm_raise_db_error(v_state, v_constraint, v_msg);
  end;
  perform app.emit_event(v_s.tenant_id, 'artifact.reported',
    jsonb_build_object('artifact_id', v_a.id, 'story_id', v_s.id, 'story_number', v_s.number,
                       'artifact_type', v_a.artifact_type, 'path', v_a.path,
                       'commit_sha', v_a.commit_sha, 'reported_by_agent_id', v_me.agent_id),
    v_s.project_id, 'story', v_s.id);
  perform set_config('response.status', '201', true);
  return app.wm_artifact_json(v_a);
end
$$;

create or replace function api.list_artifacts(story_id uuid) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  v_me app.identity := app.require_identity();
  v_s app.stories;
  v_data jsonb;
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'list_artifacts');
  v_s := app.wm_story(list_artifacts.story_id);
  select coalesce(jsonb_agg(app.wm_artifact_json(a) order by a.created_at, a.id), '[]'::jsonb)
    into v_data
    from app.artifacts a where a.tenant_id = v_s.tenant_id and a.story_id = v_s.id;
  return jsonb_build_object('data', v_data, 'meta', jsonb_build_object(
    'total', jsonb_array_length(v_data), 'has_more', false));
end
$$;

-- ---------------------------------------------------------------------------------------
-- Reads: story lists, ready / blocked, progress, dependency graph
-- ---------------------------------------------------------------------------------------
create or replace function api.list_stories(
  project_id uuid default null, agent_status text default null,
  verified_status text default null, epic_id uuid default null,
  "limit" integer default 100, "offset" integer default 0
) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  v_me app.identity := app.require_identity();
  v_errors jsonb := '[]'::jsonb;
  v_total bigint;
  v_data jsonb;
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'list_stories');
  if list_stories."limit" is null or list_stories."limit" not between 1 and 500 then
    v_errors := v_errors || app.wm_err('limit', 'limit must be between 1 and 500');
  end if;
  if list_stories."offset" is null or list_stories."offset" < 0 then
    v_errors := v_errors || app.wm_err('offset', 'offset must be 0 or more');
  end if;
  if list_stories.agent_status is not null and list_stories.agent_status not in
     ('pending', 'contracted', 'assigned', 'implementing', 'reported_done') then
    v_errors := v_errors || app.wm_err('agent_status',
      'agent_status must be pending, contracted, assigned, implementing or reported_done');
  end if;
  if list_stories.verified_status is not null
     and list_stories.verified_status not in ('unverified', 'verified', 'rejected') then
    v_errors := v_errors || app.wm_err('verified_status',
      'verified_status must be unverified, verified or rejected');
  end if;
  perform app.wm_raise_invalid(v_errors);
  if list_stories.project_id is not null then
    perform app.wm_project(list_stories.project_id);
  end if;
  if list_stories.epic_id is not null then
    perform app.wm_epic(list_stories.epic_id);
  end if;
  with matching as (
    select s as story, s.project_id as pid, e.number as epic_number,
           app.wm_number_key(s.number) as number_key
      from app.stories s join app.epics e on e.tenant_id = s.tenant_id and e.id = s.epic_id
     where (list_stories.project_id is null or s.project_id = list_stories.project_id)
       and (list_stories.epic_id is null or s.epic_id = list_stories.epic_id)
       and (list_stories.agent_status is null or s.agent_status = list_stories.agent_status)
       and (list_stories.verified_status is null
            or s.verified_status = list_stories.verified_status)
  ), page as (
    select m.story, m.epic_number,
           row_number() over (order by m.pid, m.epic_number, m.number_key) rn
      from matching m
     order by m.pid, m.epic_number, m.number_key
     limit list_stories."limit" offset list_stories."offset"
  ), ac as (
    select c.story_id, count(*) n from app.acceptance_criteria c
     where c.story_id in (select (p.story).id from page p) group by c.story_id
  )
  select (select count(*) from matching),
         coalesce((select jsonb_agg(app.wm_story_row_json(p.story, p.epic_number, ac.n)
                                    order by p.rn)
                     from page p left join ac on ac.story_id = (p.story).id), '[]'::jsonb)
    into v_total, v_data;
  return jsonb_build_object('data', v_data, 'meta', jsonb_build_object(
    'limit', list_stories."limit", 'offset', list_stories."offset", 'total', v_total,
    'has_more', list_stories."offset" + jsonb_array_length(v_data) < v_total));
end
$$;

-- Pending stories whose story dependencies and prerequisite epics are all verified: what
-- an agent can contract and claim next.
create or replace function api.ready_stories(project_id uuid default null) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  v_me app.identity := app.require_identity();
  v_data jsonb;
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'ready_stories');
  if ready_stories.project_id is not null then
    perform app.wm_project(ready_stories.project_id);
  end if;
  select coalesce(jsonb_agg(app.wm_story_row_json(s, e.number,
                              (select count(*) from app.acceptance_criteria c
                                where c.tenant_id = s.tenant_id and c.story_id = s.id))
                            order by e.number, app.wm_number_key(s.number)), '[]'::jsonb)
    into v_data
    from app.stories s join app.epics e on e.tenant_id = s.tenant_id and e.id = s.epic_id
   where (ready_stories.project_id is null or s.project_id = ready_stories.project_id)
     and s.agent_status = 'pending' and s.verified_status <> 'verified'
     and not exists (
       select 1 from app.story_dependencies sd
         join app.stories d on d.tenant_id = sd.tenant_id and d.id = sd.depends_on_story_id
        where sd.tenant_id = s.tenant_id and sd.story_id = s.id
          and d.verified_status <> 'verified')
     and not exists (
       select 1 from app.epic_dependencies ed
         join app.stories x on x.tenant_id = ed.tenant_id and x.epic_id = ed.depends_on_epic_id
        where ed.tenant_id = s.tenant_id and ed.epic_id = s.epic_id
          and x.verified_status <> 'verified');
  return jsonb_build_object('data', v_data, 'meta', jsonb_build_object(
    'total', jsonb_array_length(v_data), 'has_more', false));
end
$$;

-- Not-yet-claimed stories (pending or contracted, not verified) that something blocks,
-- each with its blockers.
-- Hash joins only: the grouped CTEs are estimated at a row or two, and a nested loop over
-- them is quadratic in the number of stories.
create or replace function api.blocked_stories(project_id uuid default null) returns jsonb
language plpgsql stable security definer
set search_path = pg_catalog, app set enable_nestloop = off set jit = off as $$
#variable_conflict use_column
declare
  v_me app.identity := app.require_identity();
  v_data jsonb;
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'blocked_stories');
  if blocked_stories.project_id is not null then
    perform app.wm_project(blocked_stories.project_id);
  end if;
  -- One set-based query (the same rules as app.story_blockers, for every candidate at once);
  -- materialized so no aggregate is re-run inside a nested loop.
  with cand as materialized (
    select s from app.stories s
     where (blocked_stories.project_id is null or s.project_id = blocked_stories.project_id)
       and s.agent_status in ('pending', 'contracted') and s.verified_status <> 'verified'
  ), story_blockers as materialized (
    select sd.story_id, jsonb_agg(jsonb_build_object('type', 'story', 'id', d.id,
             'number', d.number, 'title', d.title, 'agent_status', d.agent_status,
             'verified_status', d.verified_status) order by app.wm_number_key(d.number)) b
      from app.story_dependencies sd
      join app.stories d on d.tenant_id = sd.tenant_id and d.id = sd.depends_on_story_id
     where d.verified_status <> 'verified' and sd.story_id in (select (c.s).id from cand c)
     group by sd.story_id
  ), unverified as materialized (
    select x.epic_id, count(*) n from app.stories x
     where x.verified_status <> 'verified' group by x.epic_id
  ), epic_blockers as materialized (
    select (c.s).id story_id, jsonb_agg(jsonb_build_object('type', 'epic', 'id', pe.id,
             'number', pe.number, 'title', pe.title, 'unverified_stories', u.n)
             order by pe.number) b
      from cand c
      join app.epic_dependencies ed on ed.tenant_id = (c.s).tenant_id and ed.epic_id = (c.s).epic_id
      join app.epics pe on pe.tenant_id = ed.tenant_id and pe.id = ed.depends_on_epic_id
      join unverified u on u.epic_id = pe.id
     group by (c.s).id
  ), ac as materialized (
    select a.story_id, count(*) n from app.acceptance_criteria a
     where a.story_id in (select (c.s).id from cand c) group by a.story_id
  )
  select coalesce(jsonb_agg(app.wm_story_row_json(c.s, e.number, ac.n)
                            || jsonb_build_object('blockers', coalesce(sb.b, '[]'::jsonb)
                                                              || coalesce(eb.b, '[]'::jsonb))
                            order by e.number, app.wm_number_key((c.s).number)), '[]'::jsonb)
    into v_data
    from cand c
    join app.epics e on e.tenant_id = (c.s).tenant_id and e.id = (c.s).epic_id
    left join story_blockers sb on sb.story_id = (c.s).id
    left join epic_blockers eb on eb.story_id = (c.s).id
    left join ac on ac.story_id = (c.s).id
   where sb.b is not null or eb.b is not null;
  return jsonb_build_object('data', v_data, 'meta', jsonb_build_object(
    'total', jsonb_array_length(v_data), 'has_more', false));
end
$$;

create or replace function api.project_progress(project_id uuid) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  v_me app.identity := app.require_identity();
  v_p app.projects;
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'project_progress');
  v_p := app.wm_project(project_progress.project_id);
  return jsonb_build_object('project_id', v_p.id, 'slug', v_p.slug)
    || app.wm_progress(v_p.tenant_id, v_p.id, null)
    || jsonb_build_object('epics', (
         select coalesce(jsonb_agg(jsonb_build_object('epic_id', e.id, 'number', e.number,
                                     'title', e.title)
                                   || app.wm_progress(e.tenant_id, e.project_id, e.id)
                                   order by e.position, e.number), '[]'::jsonb)
           from app.epics e where e.tenant_id = v_p.tenant_id and e.project_id = v_p.id));
end
$$;

create or replace function api.epic_progress(epic_id uuid) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  v_me app.identity := app.require_identity();
  v_e app.epics;
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'epic_progress');
  v_e := app.wm_epic(epic_progress.epic_id);
  return jsonb_build_object('epic_id', v_e.id, 'project_id', v_e.project_id,
                            'number', v_e.number, 'title', v_e.title)
    || app.wm_progress(v_e.tenant_id, v_e.project_id, v_e.id);
end
$$;

-- Nodes (stories and epics) and edges ("from" depends on "to").
create or replace function api.dependency_graph(project_id uuid) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  v_me app.identity := app.require_identity();
  v_p app.projects;
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'dependency_graph');
  v_p := app.wm_project(dependency_graph.project_id);
  return jsonb_build_object('project_id', v_p.id,
    'nodes', (
      select coalesce(jsonb_agg(n - 'sort' order by n ->> 'type', n ->> 'sort'), '[]'::jsonb) from (
        select jsonb_build_object('id', e.id, 'type', 'epic', 'number', e.number,
                 'title', e.title, 'sort', lpad(e.number::text, 12, '0')) n
          from app.epics e where e.tenant_id = v_p.tenant_id and e.project_id = v_p.id
        union all
        select jsonb_build_object('id', s.id, 'type', 'story', 'number', s.number,
                 'title', s.title, 'epic_id', s.epic_id, 'agent_status', s.agent_status,
                 'verified_status', s.verified_status,
                 'sort', array_to_string(app.wm_number_key(s.number), '.'))
          from app.stories s where s.tenant_id = v_p.tenant_id and s.project_id = v_p.id
      ) x),
    'edges', (
      select coalesce(jsonb_agg(x.edge order by x.edge ->> 'type', x.edge ->> 'from',
                                x.edge ->> 'to'), '[]'::jsonb) from (
        select jsonb_build_object('from', sd.story_id, 'to', sd.depends_on_story_id,
                                  'type', 'story') edge
          from app.story_dependencies sd
          join app.stories s on s.tenant_id = sd.tenant_id and s.id = sd.story_id
         where s.tenant_id = v_p.tenant_id and s.project_id = v_p.id
        union all
        select jsonb_build_object('from', ed.epic_id, 'to', ed.depends_on_epic_id,
                                  'type', 'epic')
          from app.epic_dependencies ed
          join app.epics e on e.tenant_id = ed.tenant_id and e.id = ed.epic_id
         where e.tenant_id = v_p.tenant_id and e.project_id = v_p.id
      ) x));
end
$$;

-- ---------------------------------------------------------------------------------------
-- Import / merge-import / export (SPEC §4)
-- ---------------------------------------------------------------------------------------
-- The payload as rows. Malformed elements yield null numbers (the validation reports them).
create or replace function app.wm_payload_epics(p jsonb)
returns table (idx integer, number integer, obj jsonb)
language sql immutable as $$
  select (i - 1)::integer, app.wm_epic_number(e -> 'number'), e
    from jsonb_array_elements(case when jsonb_typeof(p -> 'epics') = 'array' then p -> 'epics'
                                   else '[]'::jsonb end) with ordinality as x(e, i)
$$;

create or replace function app.wm_payload_stories(p jsonb)
returns table (epic_number integer, number text, obj jsonb, path text)
language sql immutable as $$
  select e.number,
         case when jsonb_typeof(s -> 'number') = 'string' then s ->> 'number' end,
         s, format('epics[%s].stories[%s]', e.idx, i - 1)
    from app.wm_payload_epics(p) e
   cross join lateral jsonb_array_elements(
           case when jsonb_typeof(e.obj) = 'object' and jsonb_typeof(e.obj -> 'stories') = 'array'
                then e.obj -> 'stories' else '[]'::jsonb end) with ordinality as x(s, i)
$$;

create or replace function app.wm_payload_story_deps(p jsonb)
returns table (idx integer, story text, depends_on text)
language sql immutable as $$
  select (i - 1)::integer,
         case when jsonb_typeof(d -> 'story') = 'string' then d ->> 'story' end,
         case when jsonb_typeof(d -> 'depends_on') = 'string' then d ->> 'depends_on' end
    from jsonb_array_elements(case when jsonb_typeof(p -> 'story_dependencies') = 'array'
                                   then p -> 'story_dependencies' else '[]'::jsonb end)
         with ordinality as x(d, i)
$$;

create or replace function app.wm_payload_epic_deps(p jsonb)
returns table (idx integer, epic integer, depends_on integer)
language sql immutable as $$
  select (i - 1)::integer, app.wm_epic_number(d -> 'epic'), app.wm_epic_number(d -> 'depends_on')
    from jsonb_array_elements(case when jsonb_typeof(p -> 'epic_dependencies') = 'array'
                                   then p -> 'epic_dependencies' else '[]'::jsonb end)
         with ordinality as x(d, i)
$$;

-- Planner settings: within the import's own transaction the row estimates for the rows it
-- just wrote are stale (often "1 row"), which makes nested loops quadratic at 5000 stories;
-- hash joins stay linear. JIT off: compiling these one-off statements costs seconds.
create or replace function api.import_project(project_id uuid, payload jsonb, merge boolean default false)
returns jsonb
language plpgsql volatile security definer
set search_path = pg_catalog, app set enable_nestloop = off set jit = off as $$
#variable_conflict use_column
declare
  v_me app.identity;
  v_p app.projects;
  v_payload jsonb := import_project.payload;
  v_merge boolean := coalesce(import_project.merge, false);
  v_errors jsonb := '[]'::jsonb;
  v_n_epics integer; v_n_stories integer; v_n_sdeps integer; v_n_edeps integer;
  v_report jsonb;
  v_cycles jsonb;
  v_epics_created integer := 0; v_epics_updated integer := 0;
  v_stories_created integer := 0; v_criteria_created integer := 0;
  v_updated_ids uuid[] := '{}'; v_criteria_changed uuid[] := '{}';
  v_orphans jsonb := '[]'::jsonb;
  v_sdeps_wanted integer; v_sdeps_created integer;
  v_edeps_wanted integer; v_edeps_created integer;
  v_result jsonb;
  v_key text;
  v_epic_ids jsonb;   -- epic number (text) -> id
  v_story_ids jsonb;  -- story number -> id
  v_state text; v_constraint text; v_msg text;
begin
  -- Read by the audit triggers: every row written below is audited as part of this import.
  perform set_config('loopctl.audit_action', 'project.import', true);
  v_me := app.require_identity();
  perform app.require_role(v_me, array['user', 'orchestrator'], 'import_project');
  -- One import per project at a time (and no dependency change racing it).
  v_p := app.wm_project(import_project.project_id, true);

  -- 1. Shape of the document.
  if v_payload is null or jsonb_typeof(v_payload) <> 'object' then
    perform app.raise_error(422, 'invalid_import_payload',
      'the import payload must be a JSON object {"epics": [...], "story_dependencies": [...], "epic_dependencies": [...]}',
      jsonb_build_object('errors', jsonb_build_array(app.wm_err('', 'payload must be a JSON object'))));
  end if;
  foreach v_key in array array['epics', 'story_dependencies', 'epic_dependencies'] loop
    if v_payload ? v_key and jsonb_typeof(v_payload -> v_key) not in ('array', 'null') then
      v_errors := v_errors || app.wm_err(v_key, v_key || ' must be an array');
    end if;
  end loop;
  perform app.wm_raise_invalid(v_errors, 'invalid_import_payload');

  -- 2. Limits, before anything expensive.
  select count(*) into v_n_epics from app.wm_payload_epics(v_payload);
  select count(*) into v_n_stories from app.wm_payload_stories(v_payload);
  select count(*) into v_n_sdeps from app.wm_payload_story_deps(v_payload);
  select count(*) into v_n_edeps from app.wm_payload_epic_deps(v_payload);
  if v_n_epics > 500 or v_n_stories > 5000 or v_n_sdeps > 50000 or v_n_edeps > 10000 then
    perform app.raise_error(422, 'import_too_large',
      format('an import may hold at most 500 epics and 5000 stories (this one: %s epics, %s stories)',
             v_n_epics, v_n_stories),
      jsonb_build_object('epics', v_n_epics, 'max_epics', 500,
                         'stories', v_n_stories, 'max_stories', 5000,
                         'story_dependencies', v_n_sdeps, 'max_story_dependencies', 50000,
                         'epic_dependencies', v_n_edeps, 'max_epic_dependencies', 10000),
      'split the import into several calls with merge=true');
  end if;

  -- Number -> id of what the project holds. Lookups go through these maps, not joins on
  -- number: inside one transaction the planner's estimates for freshly written rows are
  -- stale, and a join it believes tiny turns quadratic at 5000 stories.
  select coalesce(jsonb_object_agg(e.number::text, e.id), '{}'::jsonb) into v_epic_ids
    from app.epics e where e.tenant_id = v_p.tenant_id and e.project_id = v_p.id;
  select coalesce(jsonb_object_agg(s.number, s.id), '{}'::jsonb) into v_story_ids
    from app.stories s where s.tenant_id = v_p.tenant_id and s.project_id = v_p.id;

  -- 3. Types and values of every field (title required only for what will be created).
  select coalesce(jsonb_agg(err), '[]'::jsonb) into v_errors from (
    select jsonb_array_elements(app.wm_epic_errors(e.obj, format('epics[%s]', e.idx),
             not v_merge or not coalesce(v_epic_ids ? e.number::text, false))) err
      from app.wm_payload_epics(v_payload) e
    union all
    select jsonb_array_elements(app.wm_story_errors(s.obj, s.path,
             not v_merge or not coalesce(v_story_ids ? s.number, false)))
      from app.wm_payload_stories(v_payload) s
    union all
    select app.wm_err(format('story_dependencies[%s]', d.idx),
             'a story dependency must be {"story": "1.2", "depends_on": "1.1"} with string numbers')
      from app.wm_payload_story_deps(v_payload) d where d.story is null or d.depends_on is null
    union all
    select app.wm_err(format('epic_dependencies[%s]', d.idx),
             'an epic dependency must be {"epic": 2, "depends_on": 1} with integer numbers')
      from app.wm_payload_epic_deps(v_payload) d where d.epic is null or d.depends_on is null
  ) x;
  perform app.wm_raise_invalid(v_errors, 'invalid_import_payload');

  -- 4. Duplicates inside the payload.
  select jsonb_strip_nulls(jsonb_build_object(
    'epics', (select jsonb_agg(number order by number) from (
                select number from app.wm_payload_epics(v_payload)
                 group by number having count(*) > 1) d),
    'stories', (select jsonb_agg(number order by app.wm_number_key(number)) from (
                  select number from app.wm_payload_stories(v_payload)
                   group by number having count(*) > 1) d),
    'story_dependencies', (select jsonb_agg(jsonb_build_object('story', story,
                                              'depends_on', depends_on) order by story, depends_on)
                             from (select story, depends_on from app.wm_payload_story_deps(v_payload)
                                    group by story, depends_on having count(*) > 1) d),
    'epic_dependencies', (select jsonb_agg(jsonb_build_object('epic', epic,
                                             'depends_on', depends_on) order by epic, depends_on)
                            from (select epic, depends_on from app.wm_payload_epic_deps(v_payload)
                                   group by epic, depends_on having count(*) > 1) d)))
    into v_report;
  if v_report <> '{}'::jsonb then
    perform app.raise_error(422, 'duplicate_in_payload',
      'the payload repeats: ' || (select string_agg(k || ' ' || (
                                     select string_agg(case when jsonb_typeof(v) = 'object'
                                                            then (v ->> 0) else v #>> '{}' end, ', ')
                                       from (select case when jsonb_typeof(x) = 'object'
                                                         then jsonb_build_array(coalesce(x ->> 'story', x ->> 'epic')
                                                                                || ' -> ' || (x ->> 'depends_on'))
                                                         else x end v
                                               from jsonb_array_elements(r.value) x) y), '; ')
                                   from jsonb_each(v_report) r(k, value)),
      v_report, 'each epic, story and dependency may appear once');
  end if;

  -- 5. References must name a story / epic of the payload or of the project.
  with known_stories as (
    select number from app.wm_payload_stories(v_payload)
    union select jsonb_object_keys(v_story_ids)
  ), known_epics as (
    select number from app.wm_payload_epics(v_payload)
    union select jsonb_object_keys(v_epic_ids)::integer
  ), bad_sdeps as (
    select d.idx, d.story, d.depends_on,
           array_remove(array[case when d.story not in (select number from known_stories)
                                   then d.story end,
                              case when d.depends_on not in (select number from known_stories)
                                   then d.depends_on end], null) unknown
      from app.wm_payload_story_deps(v_payload) d
  ), bad_edeps as (
    select d.idx, d.epic, d.depends_on,
           array_remove(array[case when d.epic not in (select number from known_epics)
                                   then d.epic end,
                              case when d.depends_on not in (select number from known_epics)
                                   then d.depends_on end], null) unknown
      from app.wm_payload_epic_deps(v_payload) d
  )
  select jsonb_strip_nulls(jsonb_build_object(
    'story_dependencies', (select jsonb_agg(jsonb_build_object('index', idx, 'story', story,
                              'depends_on', depends_on, 'unknown', to_jsonb(unknown)) order by idx)
                             from bad_sdeps where cardinality(unknown) > 0),
    'epic_dependencies', (select jsonb_agg(jsonb_build_object('index', idx, 'epic', epic,
                             'depends_on', depends_on, 'unknown', to_jsonb(unknown)) order by idx)
                            from bad_edeps where cardinality(unknown) > 0),
    'unknown_stories', (select jsonb_agg(distinct u) from bad_sdeps, unnest(unknown) u),
    'unknown_epics', (select jsonb_agg(distinct u) from bad_edeps, unnest(unknown) u)))
    into v_report;
  if v_report <> '{}'::jsonb then
    perform app.raise_error(422, 'unknown_references',
      'dependencies name unknown ' || concat_ws(' and ',
        'stories ' || (select string_agg(x, ', ') from jsonb_array_elements_text(v_report -> 'unknown_stories') x),
        'epics ' || (select string_agg(x, ', ') from jsonb_array_elements_text(v_report -> 'unknown_epics') x)),
      v_report, 'a dependency may name stories and epics of the payload or of the project');
  end if;

  -- 6. Without merge, nothing may exist already.
  if not v_merge then
    select jsonb_strip_nulls(jsonb_build_object(
      'epics', (select jsonb_agg(e.number order by e.number)
                  from app.wm_payload_epics(v_payload) e
                 where v_epic_ids ? e.number::text),
      'stories', (select jsonb_agg(s.number order by app.wm_number_key(s.number))
                    from app.wm_payload_stories(v_payload) s
                   where v_story_ids ? s.number)))
      into v_report;
    if v_report <> '{}'::jsonb then
      perform app.raise_error(409, 'numbers_already_exist',
        'the project already has ' || concat_ws(' and ',
          'epics ' || (select string_agg(x, ', ') from jsonb_array_elements_text(v_report -> 'epics') x),
          'stories ' || (select string_agg(x, ', ') from jsonb_array_elements_text(v_report -> 'stories') x)),
        v_report, 'import with merge=true to update existing epics and stories');
    end if;
  end if;

  -- 7. Cycles over the project as it will be (existing + new, both levels).
  with st as (
    select s.number, s.epic_number from app.wm_payload_stories(v_payload) s
    union all
    select x.number, e.number
      from app.stories x join app.epics e on e.tenant_id = x.tenant_id and e.id = x.epic_id
     where x.project_id = v_p.id
       and not exists (select 1 from app.wm_payload_stories(v_payload) s where s.number = x.number)
  ), sdep as (
    select story a, depends_on b from app.wm_payload_story_deps(v_payload)
    union
    select s.number, d.number from app.story_dependencies sd
      join app.stories s on s.tenant_id = sd.tenant_id and s.id = sd.story_id
      join app.stories d on d.tenant_id = sd.tenant_id and d.id = sd.depends_on_story_id
     where s.project_id = v_p.id
  ), edep as (
    select epic a, depends_on b from app.wm_payload_epic_deps(v_payload)
    union
    select e.number, p.number from app.epic_dependencies ed
      join app.epics e on e.tenant_id = ed.tenant_id and e.id = ed.epic_id
      join app.epics p on p.tenant_id = ed.tenant_id and p.id = ed.depends_on_epic_id
     where e.project_id = v_p.id
  ), edges(a, b) as (
    select 's:' || a, 's:' || b from sdep
    union all
    select 'e:' || epic_number, 's:' || number from st
    union all
    select 's:' || number, 'g:' || epic_number from st
     where epic_number in (select a from edep)
    union all
    select 'g:' || a, 'e:' || b from edep
    union all
    select distinct 'e:' || a, 'g:' || a from edep
  )
  select app.wm_find_cycles(array_agg(a), array_agg(b)) into v_cycles from edges;
  perform app.wm_raise_cycle(v_cycles);

  -- 8. Write: epics, then (merge) updates of what exists, then new stories, then deps.
  begin
    insert into app.epics (tenant_id, project_id, number, title, description, phase, position)
    select v_p.tenant_id, v_p.id, e.number, e.obj ->> 'title', e.obj ->> 'description',
           e.obj ->> 'phase', coalesce((e.obj ->> 'position')::integer, e.number)
      from app.wm_payload_epics(v_payload) e
     where not v_epic_ids ? e.number::text;
    get diagnostics v_epics_created = row_count;
    select coalesce(jsonb_object_agg(e.number::text, e.id), '{}'::jsonb) into v_epic_ids
      from app.epics e where e.tenant_id = v_p.tenant_id and e.project_id = v_p.id;

    if v_merge then
      -- Only the keys present in the payload change; statuses are never touched.
      update app.epics t
         set title = n.title, description = n.description, phase = n.phase,
             position = n.position, updated_at = now()
        from (select x.id,
                     case when e.obj ? 'title' then e.obj ->> 'title' else x.title end title,
                     case when e.obj ? 'description' then e.obj ->> 'description'
                          else x.description end description,
                     case when e.obj ? 'phase' then e.obj ->> 'phase' else x.phase end phase,
                     case when jsonb_typeof(e.obj -> 'position') = 'number'
                          then (e.obj ->> 'position')::integer else x.position end position
                from app.wm_payload_epics(v_payload) e
                join app.epics x on x.tenant_id = v_p.tenant_id
                                and x.id = (v_epic_ids ->> e.number::text)::uuid) n
       where t.tenant_id = v_p.tenant_id and t.id = n.id
         and (t.title, t.description, t.phase, t.position)
             is distinct from (n.title, n.description, n.phase, n.position);
      get diagnostics v_epics_updated = row_count;

      with changed as (
        update app.stories t
           set epic_id = n.epic_id,
               title = case when n.obj ? 'title' then n.obj ->> 'title' else t.title end,
               description = case when n.obj ? 'description' then n.obj ->> 'description'
                                  else t.description end,
               estimated_hours = case when n.obj ? 'estimated_hours'
                                      then (n.obj ->> 'estimated_hours')::numeric
                                      else t.estimated_hours end,
               updated_at = now()
          from (select (v_story_ids ->> s.number)::uuid id,
                       (v_epic_ids ->> s.epic_number::text)::uuid epic_id, s.obj
                  from app.wm_payload_stories(v_payload) s
                 where v_story_ids ? s.number) n
         where t.tenant_id = v_p.tenant_id and t.id = n.id
           and (t.epic_id, t.title, t.description, t.estimated_hours) is distinct from
               (n.epic_id,
                case when n.obj ? 'title' then n.obj ->> 'title' else t.title end,
                case when n.obj ? 'description' then n.obj ->> 'description' else t.description end,
                case when n.obj ? 'estimated_hours' then (n.obj ->> 'estimated_hours')::numeric
                     else t.estimated_hours end)
        returning t.id)
      select coalesce(array_agg(id), '{}') into v_updated_ids from changed;

      -- Criteria of existing stories, where the payload lists them: matched by id, so a
      -- kept criterion keeps its status.
      with target as (
        select (v_story_ids ->> s.number)::uuid story_id, s.obj -> 'acceptance_criteria' criteria
          from app.wm_payload_stories(v_payload) s
         where s.obj ? 'acceptance_criteria' and v_story_ids ? s.number
      ), wanted as (
        select t.story_id, c.ac_id, c.position, c.description
          from target t cross join lateral app.wm_criteria(t.criteria) c
      ), removed as (
        delete from app.acceptance_criteria a using target t
         where a.tenant_id = v_p.tenant_id and a.story_id = t.story_id
           and not exists (select 1 from wanted w
                            where w.story_id = a.story_id and w.ac_id = a.ac_id)
        returning a.story_id
      ), upserted as (
        insert into app.acceptance_criteria as a (tenant_id, story_id, ac_id, position, description)
        select v_p.tenant_id, w.story_id, w.ac_id, w.position, w.description from wanted w
        on conflict (tenant_id, story_id, ac_id) do update
           set position = excluded.position, description = excluded.description,
               updated_at = now()
         where (a.position, a.description) is distinct from (excluded.position, excluded.description)
        returning a.story_id
      )
      select coalesce(array_agg(distinct story_id), '{}') into v_criteria_changed
        from (select story_id from removed union all select story_id from upserted) c;

      select coalesce(jsonb_agg(x.number order by app.wm_number_key(x.number)), '[]'::jsonb)
        into v_orphans
        from jsonb_object_keys(v_story_ids) as x(number)
       where not exists (select 1 from app.wm_payload_stories(v_payload) s where s.number = x.number);
    end if;

    with created as (
      insert into app.stories (tenant_id, project_id, epic_id, number, title, description,
                               estimated_hours)
      select v_p.tenant_id, v_p.id, (v_epic_ids ->> s.epic_number::text)::uuid, s.number,
             s.obj ->> 'title', s.obj ->> 'description', (s.obj ->> 'estimated_hours')::numeric
        from app.wm_payload_stories(v_payload) s
       where not v_story_ids ? s.number
      returning id, number
    ), criteria as (
      insert into app.acceptance_criteria (tenant_id, story_id, ac_id, position, description)
      select v_p.tenant_id, c.id, ac.ac_id, ac.position, ac.description
        from created c
        join app.wm_payload_stories(v_payload) s on s.number = c.number
       cross join lateral app.wm_criteria(s.obj -> 'acceptance_criteria') ac
      returning 1
    )
    select (select count(*) from created), (select count(*) from criteria)
      into v_stories_created, v_criteria_created;
    select coalesce(jsonb_object_agg(s.number, s.id), '{}'::jsonb) into v_story_ids
      from app.stories s where s.tenant_id = v_p.tenant_id and s.project_id = v_p.id;

    with wanted as (
      select distinct (v_story_ids ->> p.story)::uuid sid, (v_story_ids ->> p.depends_on)::uuid did
        from app.wm_payload_story_deps(v_payload) p
    ), created as (
      insert into app.story_dependencies (tenant_id, story_id, depends_on_story_id)
      select v_p.tenant_id, sid, did from wanted
      on conflict do nothing
      returning 1
    )
    select (select count(*) from wanted), (select count(*) from created)
      into v_sdeps_wanted, v_sdeps_created;

    with wanted as (
      select distinct (v_epic_ids ->> p.epic::text)::uuid eid,
             (v_epic_ids ->> p.depends_on::text)::uuid did
        from app.wm_payload_epic_deps(v_payload) p
    ), created as (
      insert into app.epic_dependencies (tenant_id, epic_id, depends_on_epic_id)
      select v_p.tenant_id, eid, did from wanted
      on conflict do nothing
      returning 1
    )
    select (select count(*) from wanted), (select count(*) from created)
      into v_edeps_wanted, v_edeps_created;
  exception
    when unique_violation then
      perform app.raise_error(409, 'import_conflict',
        'a concurrent change created the same numbers; retry the import', null);
    when check_violation or not_null_violation or numeric_value_out_of_range
         or invalid_text_representation or string_data_right_truncation then
      get stacked diagnostics v_state = returned_sqlstate, v_constraint = constraint_name,
                              v_msg = message_text;
      perform app.wm_raise_db_error(v_state, v_constraint, v_msg);
  end;

  v_result := jsonb_build_object(
    'epics_created', v_epics_created,
    'stories_created', v_stories_created,
    'acceptance_criteria_created', v_criteria_created,
    'dependencies_created', v_sdeps_created + v_edeps_created);
  if v_merge then
    v_result := v_result || jsonb_build_object(
      'epics_updated', v_epics_updated,
      'stories_updated', (select count(distinct u) from unnest(v_updated_ids || v_criteria_changed) u),
      'stories_orphaned', v_orphans,
      'dependencies_existing', (v_sdeps_wanted - v_sdeps_created) + (v_edeps_wanted - v_edeps_created));
  end if;
  perform app.emit_event(v_p.tenant_id, 'project.imported',
    jsonb_build_object('project_id', v_p.id, 'merge', v_merge) || v_result,
    v_p.id, 'project', v_p.id);
  perform set_config('response.status', case when v_merge then '200' else '201' end, true);
  return jsonb_build_object('import', v_result);
end
$$;

-- The project in the import format: export -> import round-trips.
create or replace function api.export_project(project_id uuid) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
#variable_conflict use_column
declare
  v_me app.identity := app.require_identity();
  v_p app.projects;
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'export_project');
  v_p := app.wm_project(export_project.project_id);
  return jsonb_build_object(
    'project', jsonb_strip_nulls(jsonb_build_object('name', v_p.name, 'slug', v_p.slug,
                 'repo_url', v_p.repo_url, 'description', v_p.description)),
    'epics', (
      select coalesce(jsonb_agg(jsonb_strip_nulls(jsonb_build_object('number', e.number,
                 'title', e.title, 'description', e.description, 'phase', e.phase,
                 'position', e.position))
               || jsonb_build_object('stories', (
                    select coalesce(jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                             'number', s.number, 'title', s.title,
                             'description', s.description,
                             'estimated_hours', s.estimated_hours))
                           || jsonb_build_object('acceptance_criteria', (
                                select coalesce(jsonb_agg(jsonb_build_object('id', c.ac_id,
                                         'description', c.description)
                                         order by c.position, c.ac_id), '[]'::jsonb)
                                  from app.acceptance_criteria c
                                 where c.tenant_id = s.tenant_id and c.story_id = s.id))
                           order by app.wm_number_key(s.number)), '[]'::jsonb)
                      from app.stories s
                     where s.tenant_id = e.tenant_id and s.epic_id = e.id))
               order by e.number), '[]'::jsonb)
        from app.epics e where e.tenant_id = v_p.tenant_id and e.project_id = v_p.id),
    'story_dependencies', (
      select coalesce(jsonb_agg(jsonb_build_object('story', s.number, 'depends_on', d.number)
                                order by app.wm_number_key(s.number), app.wm_number_key(d.number)),
                      '[]'::jsonb)
        from app.story_dependencies sd
        join app.stories s on s.tenant_id = sd.tenant_id and s.id = sd.story_id
        join app.stories d on d.tenant_id = sd.tenant_id and d.id = sd.depends_on_story_id
       where s.tenant_id = v_p.tenant_id and s.project_id = v_p.id),
    'epic_dependencies', (
      select coalesce(jsonb_agg(jsonb_build_object('epic', e.number, 'depends_on', p.number)
                                order by e.number, p.number), '[]'::jsonb)
        from app.epic_dependencies ed
        join app.epics e on e.tenant_id = ed.tenant_id and e.id = ed.epic_id
        join app.epics p on p.tenant_id = ed.tenant_id and p.id = ed.depends_on_epic_id
       where e.tenant_id = v_p.tenant_id and e.project_id = v_p.id));
end
$$;

reset role;
