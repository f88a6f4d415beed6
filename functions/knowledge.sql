-- Knowledge wiki (SPEC §9, issue #8): articles, links, read log, the extraction / embedding
-- job queue (claimed by the worker), hybrid search, context for a story, health lint,
-- analytics and the data behind the Obsidian export.
--
-- Installation settings (one active embedding model per installation) are database-level
-- GUCs set by the operator or by `loopctl serve` (ALTER DATABASE ... SET loopctl.x = ...):
--   loopctl.embeddings_url      OpenAI-compatible POST /v1/embeddings endpoint (app.embed)
--   loopctl.embeddings_api_key  bearer token for it (optional)
--   loopctl.embedding_model     the active model name (default all-MiniLM-L6-v2)
-- They are read from pg_db_role_setting / the server configuration, never from a session
-- SET, so a caller with direct SQL access cannot point app.embed at a URL of its choosing.

-- == superuser-owned: settings reader and the plpython3u embedding call ====================
-- plpython3u is untrusted: these are created by the migrating superuser (no SET ROLE).

create or replace function app.knowledge_setting(p_name text) returns text
language sql stable security definer set search_path = pg_catalog as $$
  select coalesce(
    (select substr(s, length(p_name) + 2)
       from pg_db_role_setting d, unnest(d.setconfig) s
      where d.setdatabase = (select oid from pg_database where datname = current_database())
        and d.setrole = 0 and s like p_name || '=%'
      limit 1),
    (select nullif(setting, '') from pg_settings
      where name = p_name and source in ('configuration file', 'command line', 'environment variable')))
$$;

create or replace function app.knowledge_active_model() returns text
language sql stable security definer set search_path = pg_catalog as $$
  select coalesce(nullif(app.knowledge_setting('loopctl.embedding_model'), ''), 'all-MiniLM-L6-v2')
$$;

-- The query embedding for semantic search, from psql too: POSTs to the configured
-- OpenAI-compatible endpoint. Returns null (never raises) when no endpoint is configured or
-- it fails, so search can fall back to keyword instead of failing.
create or replace function app.embed(p_text text) returns public.vector
language plpython3u volatile security definer set search_path = pg_catalog, app as $$
import json
import urllib.parse
import urllib.request

if p_text is None or not p_text.strip():
    return None
cfg = plpy.execute(
    "select app.knowledge_setting('loopctl.embeddings_url') as url,"
    " app.knowledge_setting('loopctl.embeddings_api_key') as key,"
    " app.knowledge_setting('loopctl.embeddings_timeout') as timeout,"
    " app.knowledge_active_model() as model")[0]
url = cfg["url"]
if not url:
    return None
text = p_text[:8000]
cache = SD.setdefault("embed_cache", {})
cache_key = (url, cfg["model"], text)
if cache_key in cache:
    return cache[cache_key]
headers = {"Content-Type": "application/json"}
if cfg["key"]:
    headers["Authorization"] = "Bearer " + cfg["key"]
req = urllib.request.Request(
    url, data=json.dumps({"input": text, "model": cfg["model"]}).encode(),
    headers=headers, method="POST")
host = urllib.parse.urlsplit(url).hostname or ""
# Loopback endpoints (the service's own model) must not go through an HTTP proxy.
handlers = [urllib.request.ProxyHandler({})] if host in ("127.0.0.1", "localhost", "::1") else []
try:
    with urllib.request.build_opener(*handlers).open(
            req, timeout=float(cfg["timeout"] or 10)) as resp:
        data = json.loads(resp.read(4_000_000))
    vec = [float(x) for x in data["data"][0]["embedding"]]
except Exception as exc:  # noqa: BLE001 - any failure means "no embedding"
    plpy.warning("app.embed: embeddings endpoint unavailable: %s" % (exc,))
    return None
if len(vec) != 384:
    plpy.warning("app.embed: expected 384 dimensions, got %d" % len(vec))
    return None
out = "[" + ",".join(repr(x) for x in vec) + "]"
if len(cache) > 256:
    cache.clear()
cache[cache_key] = out
return out
$$;

set role loopctl_owner;

-- == helpers ===============================================================================

create or replace function app.knowledge_categories() returns text[]
language sql immutable as $$
  select array['pattern', 'convention', 'decision', 'finding', 'reference']
$$;

create or replace function app.knowledge_slugify(p_title text) returns text
language sql immutable as $$
  select coalesce(nullif(left(btrim(regexp_replace(lower(p_title), '[^a-z0-9]+', '-', 'g'), '-'),
                              80), ''), 'article')
$$;

-- A slug unique among the tenant's live articles (a numbered suffix on collision).
create or replace function app.knowledge_unique_slug(p_tenant uuid, p_title text, p_except uuid)
returns text language plpgsql stable as $$
declare
  v_base text := btrim(app.knowledge_slugify(p_title), '-');
  v_slug text := v_base;
  v_n int := 1;
begin
  while exists (select 1 from app.articles
                 where tenant_id = p_tenant and slug = v_slug
                   and status in ('draft', 'published') and id is distinct from p_except) loop
    v_n := v_n + 1;
    v_slug := left(v_base, 75) || '-' || v_n;
  end loop;
  return v_slug;
end
$$;

-- Validates article fields (422 / 413, before anything is written); returns normalized tags.
create or replace function app.knowledge_check_fields(
  p_title text, p_body text, p_category text, p_tags text[]
) returns text[] language plpgsql immutable as $$
declare
  v_tags text[];
  v_bad text;
begin
  if p_title is null or length(btrim(p_title)) = 0 then
    perform app.raise_error(422, 'invalid_title', 'title must not be empty');
  elsif length(btrim(p_title)) > 300 then
    perform app.raise_error(422, 'invalid_title', 'title is longer than 300 characters',
      jsonb_build_object('length', length(p_title), 'max', 300));
  end if;
  if p_body is null or length(btrim(p_body)) = 0 then
    perform app.raise_error(422, 'invalid_body', 'body must not be empty');
  elsif length(p_body) > 100000 then
    perform app.raise_error(413, 'body_too_large', 'body is longer than 100000 characters',
      jsonb_build_object('length', length(p_body), 'max', 100000), 'split it into articles');
  end if;
  if p_category is null or not (p_category = any (app.knowledge_categories())) then
    perform app.raise_error(422, 'unknown_category',
      format('unknown category %L', p_category),
      jsonb_build_object('allowed', to_jsonb(app.knowledge_categories())));
  end if;
  select coalesce(array_agg(distinct lower(btrim(t)) order by lower(btrim(t))), '{}')
    into v_tags from unnest(coalesce(p_tags, '{}')) t where t is not null and btrim(t) <> '';
  if cardinality(v_tags) > 20 then
    perform app.raise_error(422, 'too_many_tags', 'at most 20 tags',
      jsonb_build_object('count', cardinality(v_tags)));
  end if;
  select t into v_bad from unnest(v_tags) t where t !~ '^[a-z0-9][a-z0-9._/+#-]{0,49}$' limit 1;
  if v_bad is not null then
    perform app.raise_error(422, 'invalid_tag',
      format('tag %L: lowercase letters, digits and ._/+#- only, at most 50 characters', v_bad),
      jsonb_build_object('tag', v_bad));
  end if;
  return v_tags;
end
$$;

create or replace function app.knowledge_article_json(a app.articles, p_with_body boolean default true)
returns jsonb language sql stable as $$
  select jsonb_build_object(
    'id', a.id, 'project_id', a.project_id, 'title', a.title, 'slug', a.slug,
    'category', a.category, 'tags', to_jsonb(a.tags), 'status', a.status, 'source', a.source,
    'source_ref', a.source_ref, 'embedding_model', a.embedding_model,
    'embedded', a.embedding is not null, 'published_at', a.published_at,
    'created_at', a.created_at, 'updated_at', a.updated_at)
    || case when p_with_body then jsonb_build_object('body', a.body) else '{}'::jsonb end
$$;

-- The caller's article or 404 (another tenant's id is invisible through RLS: same 404).
create or replace function app.knowledge_find(p_id uuid, p_lock boolean default false)
returns app.articles language plpgsql volatile as $$
declare
  a app.articles;
begin
  if p_id is null then
    perform app.raise_error(422, 'invalid_id', 'article id is required');
  end if;
  if p_lock then
    select * into a from app.articles
     where tenant_id = app.current_tenant_id() and id = p_id for update;
  else
    select * into a from app.articles where tenant_id = app.current_tenant_id() and id = p_id;
  end if;
  if not found then
    perform app.raise_error(404, 'article_not_found', 'no such article',
      jsonb_build_object('id', p_id));
  end if;
  return a;
end
$$;

create or replace function app.knowledge_check_project(p_tenant uuid, p_project uuid)
returns void language plpgsql stable as $$
begin
  if p_project is not null and not exists (
      select 1 from app.projects where tenant_id = p_tenant and id = p_project) then
    perform app.raise_error(404, 'project_not_found', 'no such project',
      jsonb_build_object('project_id', p_project));
  end if;
end
$$;

create or replace function app.knowledge_sha(p_text text) returns text
language sql immutable strict as $$
  select encode(sha256(convert_to(p_text, 'UTF8')), 'hex')
$$;

-- Queues a job once per (tenant, kind, content hash). A finished embed job is re-armed
-- (the same content may need embedding again after a model round trip); extraction and
-- ingest jobs are never repeated for the same content. Returns (job id, was it new).
create or replace function app.knowledge_enqueue(
  p_tenant uuid, p_kind text, p_payload jsonb, p_hash text,
  out job_id uuid, out created boolean
) language plpgsql volatile as $$
begin
  insert into app.knowledge_jobs (tenant_id, kind, payload, content_hash)
  values (p_tenant, p_kind, p_payload, p_hash)
  on conflict (tenant_id, kind, content_hash) do nothing
  returning id into job_id;
  created := job_id is not null;
  if not created then
    update app.knowledge_jobs
       set status = 'pending', attempts = 0, run_after = now(), last_error = null,
           result = null, finished_at = null, updated_at = now(), payload = p_payload
     where tenant_id = p_tenant and kind = p_kind and content_hash = p_hash
       and kind = 'embed' and status in ('done', 'dead')
    returning id into job_id;
    created := job_id is not null;
    if not created then
      select id into job_id from app.knowledge_jobs
       where tenant_id = p_tenant and kind = p_kind and content_hash = p_hash;
    end if;
  end if;
  if created then
    perform pg_notify('loopctl_knowledge', p_kind);
  end if;
end
$$;

-- What an article's vector is computed from, and the hash that says it is current.
create or replace function app.knowledge_embed_text(a app.articles) returns text
language sql immutable as $$
  select a.title || E'\n\n' || left(a.body, 4000)
$$;

create or replace function app.knowledge_queue_embed(p_tenant uuid, p_article uuid)
returns uuid language plpgsql volatile as $$
declare
  a app.articles;
  v_model text := app.knowledge_active_model();
  v_job uuid;
begin
  select * into a from app.articles where tenant_id = p_tenant and id = p_article;
  select e.job_id into v_job from app.knowledge_enqueue(p_tenant, 'embed',
    jsonb_build_object('article_id', p_article, 'model', v_model),
    app.knowledge_sha(p_article::text || '|' || v_model || '|'
                      || app.knowledge_sha(app.knowledge_embed_text(a)))) e;
  return v_job;
end
$$;

create or replace function app.knowledge_log_reads(
  p_me app.identity, p_ids uuid[], p_via text, p_project uuid default null
) returns void language sql volatile as $$
  insert into app.article_reads (tenant_id, article_id, key_id, agent_id, project_id, via)
  select p_me.tenant_id, i, p_me.key_id, p_me.agent_id, p_project, p_via
    from unnest(p_ids) i where i is not null
$$;

-- == API: create / read / change ============================================================

create or replace function api.knowledge_create(
  p_title text, p_body text, p_category text, p_tags text[] default '{}',
  p_project_id uuid default null
) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
  v_tags text[];
  a app.articles;
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'knowledge_create');
  v_tags := app.knowledge_check_fields(p_title, p_body, p_category, p_tags);
  perform app.knowledge_check_project(v_me.tenant_id, p_project_id);
  begin
    insert into app.articles (tenant_id, project_id, title, slug, body, category, tags, source,
                              created_by_key_id, created_by_agent_id)
    values (v_me.tenant_id, p_project_id, btrim(p_title),
            app.knowledge_unique_slug(v_me.tenant_id, p_title, null), p_body, p_category,
            v_tags, 'manual', v_me.key_id, v_me.agent_id)
    returning * into a;
  exception when unique_violation then
    perform app.raise_error(409, 'title_taken', 'a live article already has this title',
      jsonb_build_object('title', btrim(p_title)));
  end;
  perform app.emit_event(v_me.tenant_id, 'article.created',
    jsonb_build_object('article_id', a.id, 'title', a.title, 'status', a.status),
    a.project_id, 'article', a.id);
  return jsonb_build_object('article', app.knowledge_article_json(a));
end
$$;

create or replace function api.knowledge_get(p_id uuid) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
  a app.articles;
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'knowledge_get');
  a := app.knowledge_find(p_id);
  perform app.knowledge_log_reads(v_me, array[a.id], 'get', a.project_id);
  return jsonb_build_object('article', app.knowledge_article_json(a),
    'links', app.knowledge_links_json(a.tenant_id, a.id));
end
$$;

create or replace function app.knowledge_links_json(p_tenant uuid, p_id uuid) returns jsonb
language sql stable as $$
  select coalesce(jsonb_agg(jsonb_build_object(
           'direction', l.direction, 'link_type', l.link_type, 'article_id', o.id,
           'title', o.title, 'status', o.status, 'score', l.score, 'origin', l.origin)
           order by l.direction, l.link_type, o.title), '[]'::jsonb)
    from (select 'out' as direction, to_article_id as other, link_type, score, origin
            from app.article_links where tenant_id = p_tenant and from_article_id = p_id
          union all
          select 'in', from_article_id, link_type, score, origin
            from app.article_links where tenant_id = p_tenant and to_article_id = p_id) l
    join app.articles o on o.tenant_id = p_tenant and o.id = l.other
$$;

create or replace function api.knowledge_update(
  p_id uuid, p_title text default null, p_body text default null,
  p_category text default null, p_tags text[] default null
) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
  a app.articles;
  v_tags text[];
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'knowledge_update');
  a := app.knowledge_find(p_id, true);
  if a.status in ('archived', 'superseded') then
    perform app.raise_error(409, 'article_not_live', format('article is %s', a.status),
      jsonb_build_object('status', a.status));
  end if;
  if a.status = 'published' and v_me.role = 'agent' then
    perform app.raise_error(403, 'insufficient_role',
      'editing a published article requires a user or orchestrator key');
  end if;
  v_tags := app.knowledge_check_fields(coalesce(p_title, a.title), coalesce(p_body, a.body),
                                       coalesce(p_category, a.category), coalesce(p_tags, a.tags));
  begin
    update app.articles
       set title = btrim(coalesce(p_title, title)),
           slug = case when p_title is null then slug
                       else app.knowledge_unique_slug(tenant_id, p_title, id) end,
           body = coalesce(p_body, body), category = coalesce(p_category, category),
           tags = v_tags, updated_at = now()
     where tenant_id = a.tenant_id and id = a.id
    returning * into a;
  exception when unique_violation then
    perform app.raise_error(409, 'title_taken', 'a live article already has this title',
      jsonb_build_object('title', btrim(p_title)));
  end;
  if a.status = 'published' then
    perform app.knowledge_queue_embed(a.tenant_id, a.id);  -- no-op for the worker if unchanged
  end if;
  perform app.emit_event(a.tenant_id, 'article.updated',
    jsonb_build_object('article_id', a.id, 'title', a.title), a.project_id, 'article', a.id);
  return jsonb_build_object('article', app.knowledge_article_json(a));
end
$$;

-- Status transitions. Publishing queues the embedding (filled by the worker, never in this
-- transaction); the worker then auto-links similar published articles.
create or replace function app.knowledge_set_status(p_me app.identity, p_id uuid, p_to text)
returns app.articles language plpgsql volatile as $$
declare
  a app.articles;
  v_allowed text[] := case p_to
    when 'published' then array['draft']
    when 'draft' then array['published']
    when 'archived' then array['draft', 'published']
  end;
begin
  a := app.knowledge_find(p_id, true);
  if not (a.status = any (v_allowed)) then
    perform app.raise_error(409, 'invalid_article_status',
      format('cannot make a %s article %s', a.status, p_to),
      jsonb_build_object('current_status', a.status, 'attempted_status', p_to));
  end if;
  begin
    update app.articles
       set status = p_to, updated_at = now(),
           published_at = case when p_to = 'published' then now() else published_at end
     where tenant_id = a.tenant_id and id = a.id
    returning * into a;
  exception when unique_violation then
    perform app.raise_error(409, 'title_taken', 'a live article already has this title',
      jsonb_build_object('title', a.title));
  end;
  if p_to = 'published' then
    perform app.knowledge_queue_embed(a.tenant_id, a.id);
  end if;
  perform app.emit_event(a.tenant_id, 'article.' || case p_to when 'draft' then 'unpublished'
                                                          else p_to end,
    jsonb_build_object('article_id', a.id, 'title', a.title, 'status', a.status),
    a.project_id, 'article', a.id);
  return a;
end
$$;

create or replace function api.knowledge_publish(p_id uuid) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  perform app.require_role(v_me, array['user', 'orchestrator'], 'knowledge_publish');
  return jsonb_build_object('article',
    app.knowledge_article_json(app.knowledge_set_status(v_me, p_id, 'published'), false));
end
$$;

create or replace function api.knowledge_unpublish(p_id uuid) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  perform app.require_role(v_me, array['user', 'orchestrator'], 'knowledge_unpublish');
  return jsonb_build_object('article',
    app.knowledge_article_json(app.knowledge_set_status(v_me, p_id, 'draft'), false));
end
$$;

create or replace function api.knowledge_archive(p_id uuid) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  perform app.require_role(v_me, array['user', 'orchestrator'], 'knowledge_archive');
  return jsonb_build_object('article',
    app.knowledge_article_json(app.knowledge_set_status(v_me, p_id, 'archived'), false));
end
$$;

-- Bulk publish: ≤50 ids, per-item results; one bad id does not stop the others.
create or replace function api.knowledge_bulk_publish(p_ids uuid[]) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
  v_id uuid;
  v_results jsonb := '[]'::jsonb;
  v_err jsonb;
begin
  perform app.require_role(v_me, array['user', 'orchestrator'], 'knowledge_bulk_publish');
  if p_ids is null or cardinality(p_ids) = 0 or cardinality(p_ids) > 50 then
    perform app.raise_error(422, 'invalid_batch', 'between 1 and 50 article ids',
      jsonb_build_object('count', coalesce(cardinality(p_ids), 0), 'max', 50));
  end if;
  foreach v_id in array p_ids loop
    begin
      perform app.knowledge_set_status(v_me, v_id, 'published');
      v_results := v_results || jsonb_build_object('id', v_id, 'ok', true);
    exception when sqlstate 'PGRST' then
      get stacked diagnostics v_err = message_text;
      v_results := v_results || jsonb_build_object('id', v_id, 'ok', false, 'error', v_err);
    end;
  end loop;
  return jsonb_build_object('results', v_results,
    'published', (select count(*) from jsonb_array_elements(v_results) r where (r ->> 'ok')::boolean));
end
$$;

-- p_new_id supersedes p_old_id: the old one leaves the live set, a supersedes link is kept.
create or replace function api.knowledge_supersede(p_old_id uuid, p_new_id uuid) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
  v_old app.articles;
  v_new app.articles;
begin
  perform app.require_role(v_me, array['user', 'orchestrator'], 'knowledge_supersede');
  if p_old_id = p_new_id then
    perform app.raise_error(422, 'invalid_supersede', 'an article cannot supersede itself');
  end if;
  v_old := app.knowledge_find(p_old_id, true);
  v_new := app.knowledge_find(p_new_id, true);
  if v_old.status in ('archived', 'superseded') or v_new.status in ('archived', 'superseded') then
    perform app.raise_error(409, 'article_not_live', 'both articles must be live',
      jsonb_build_object('old_status', v_old.status, 'new_status', v_new.status));
  end if;
  update app.articles set status = 'superseded', updated_at = now()
   where tenant_id = v_old.tenant_id and id = v_old.id returning * into v_old;
  insert into app.article_links (tenant_id, from_article_id, to_article_id, link_type)
  values (v_me.tenant_id, v_new.id, v_old.id, 'supersedes') on conflict do nothing;
  perform app.emit_event(v_me.tenant_id, 'article.superseded',
    jsonb_build_object('article_id', v_old.id, 'superseded_by', v_new.id),
    v_old.project_id, 'article', v_old.id);
  return jsonb_build_object('superseded', app.knowledge_article_json(v_old, false),
                            'by', app.knowledge_article_json(v_new, false));
end
$$;

create or replace function api.knowledge_delete(p_id uuid) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
  a app.articles;
begin
  perform app.require_role(v_me, array['user'], 'knowledge_delete');
  a := app.knowledge_find(p_id, true);
  delete from app.articles where tenant_id = a.tenant_id and id = a.id;
  perform app.emit_event(a.tenant_id, 'article.deleted',
    jsonb_build_object('article_id', a.id, 'title', a.title), a.project_id, 'article', a.id);
  return jsonb_build_object('deleted', a.id);
end
$$;

create or replace function api.knowledge_link(
  p_from_id uuid, p_to_id uuid, p_link_type text default 'relates_to'
) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'knowledge_link');
  if p_link_type is null
     or p_link_type not in ('relates_to', 'derived_from', 'contradicts', 'supersedes') then
    perform app.raise_error(422, 'unknown_link_type', format('unknown link type %L', p_link_type),
      jsonb_build_object('allowed', jsonb_build_array('relates_to', 'derived_from',
                                                      'contradicts', 'supersedes')));
  end if;
  if p_from_id = p_to_id then
    perform app.raise_error(422, 'invalid_link', 'an article cannot link to itself');
  end if;
  perform app.knowledge_find(p_from_id);
  perform app.knowledge_find(p_to_id);
  insert into app.article_links (tenant_id, from_article_id, to_article_id, link_type)
  values (v_me.tenant_id, p_from_id, p_to_id, p_link_type) on conflict do nothing;
  return jsonb_build_object('links', app.knowledge_links_json(v_me.tenant_id, p_from_id));
end
$$;

create or replace function api.knowledge_links(p_id uuid) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
  a app.articles;
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'knowledge_links');
  a := app.knowledge_find(p_id);
  return jsonb_build_object('article_id', a.id,
    'links', app.knowledge_links_json(a.tenant_id, a.id));
end
$$;

create or replace function app.knowledge_check_limit(p_limit int, p_max int) returns int
language plpgsql immutable as $$
begin
  if p_limit is null or p_limit < 1 or p_limit > p_max then
    perform app.raise_error(422, 'invalid_limit', format('limit must be between 1 and %s', p_max),
      jsonb_build_object('limit', p_limit, 'max', p_max));
  end if;
  return p_limit;
end
$$;

create or replace function api.knowledge_drafts(
  p_project_id uuid default null, p_limit int default 20, p_offset int default 0
) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'knowledge_drafts');
  perform app.knowledge_check_limit(p_limit, 200);
  return (
    select jsonb_build_object(
      'data', coalesce(jsonb_agg(app.knowledge_article_json(a.art, false) order by a.rn)
                       filter (where a.rn > coalesce(p_offset, 0)
                                 and a.rn <= coalesce(p_offset, 0) + p_limit), '[]'::jsonb),
      'meta', jsonb_build_object('limit', p_limit, 'offset', coalesce(p_offset, 0),
                                 'total', count(*),
                                 'has_more', count(*) > coalesce(p_offset, 0) + p_limit))
      from (select x as art, row_number() over (order by x.created_at desc, x.id) rn
              from app.articles x
             where x.tenant_id = v_me.tenant_id and x.status = 'draft'
               and (p_project_id is null or x.project_id = p_project_id)) a);
end
$$;

-- Short list (no bodies) of published articles: what an agent's context can afford.
create or replace function api.knowledge_index(
  p_project_id uuid default null, p_category text default null, p_limit int default 20
) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'knowledge_index');
  perform app.knowledge_check_limit(p_limit, 500);
  if p_category is not null and not (p_category = any (app.knowledge_categories())) then
    perform app.raise_error(422, 'unknown_category', format('unknown category %L', p_category),
      jsonb_build_object('allowed', to_jsonb(app.knowledge_categories())));
  end if;
  return jsonb_build_object('data', coalesce((
    select jsonb_agg(jsonb_build_object('id', a.id, 'title', a.title, 'category', a.category,
                                        'tags', to_jsonb(a.tags), 'project_id', a.project_id)
                     order by a.category, a.title)
      from (select * from app.articles x
             where x.tenant_id = v_me.tenant_id and x.status = 'published'
               and (p_project_id is null or x.project_id = p_project_id or x.project_id is null)
               and (p_category is null or x.category = p_category)
             order by x.category, x.title limit p_limit) a), '[]'::jsonb));
end
$$;

-- == search ================================================================================

-- Any of the query's terms (stemmed lexemes OR-ed); null when the query has none.
create or replace function app.knowledge_any_terms(p_query text) returns tsquery
language sql immutable as $$
  select string_agg(quote_literal(l), ' | ')::tsquery
    from unnest(tsvector_to_array(to_tsvector('english', p_query))) l
$$;

-- Keyword hits: websearch_to_tsquery matches (all terms, phrases, -exclusions) first, then
-- documents matching some of the query's terms, by the share of terms they match
-- (coverage) and ts_rank.
create or replace function app.knowledge_keyword_hits(
  p_tenant uuid, p_query text, p_project uuid, p_category text, p_limit int
) returns table (article_id uuid, rank int, score real, all_terms boolean, coverage real)
language plpgsql stable as $$
declare
  v_all tsquery := websearch_to_tsquery('english', p_query);
  v_any tsquery := app.knowledge_any_terms(p_query);
  v_lex text[] := tsvector_to_array(to_tsvector('english', p_query));
begin
  if v_any is null then
    return;
  end if;
  return query
    select h.id, (row_number() over (order by h.all_match desc, h.cov desc, h.r desc, h.id))::int,
           h.r, h.all_match, h.cov
      from (select c.*, ((select count(*) from unnest(v_lex) l
                           where c.fts @@ quote_literal(l)::tsquery)::real
                         / cardinality(v_lex))::real as cov
              from (select a.id, a.fts, (a.fts @@ v_all) as all_match,
                           ts_rank(a.fts, v_any, 1)::real as r
                      from app.articles a
                     where a.tenant_id = p_tenant and a.status = 'published' and a.fts @@ v_any
                       and (p_project is null or a.project_id = p_project
                            or a.project_id is null)
                       and (p_category is null or a.category = p_category)) c
             order by c.all_match desc, cov desc, c.r desc, c.id
             limit p_limit) h
     order by 2;
end
$$;

-- Semantic hits: pgvector cosine over the HNSW index, with the tenant filter. Iterative
-- index scans (pgvector 0.8) keep scanning until p_limit rows pass the filter, so another
-- tenant's nearer vectors cannot crowd this tenant's results out; the outer ORDER BY
-- restores exact order after relaxed_order.
create or replace function app.knowledge_semantic_hits(
  p_tenant uuid, p_vec public.vector, p_model text, p_project uuid, p_category text,
  p_limit int
) returns table (article_id uuid, rank int, similarity real)
language plpgsql volatile as $$
begin
  perform set_config('hnsw.iterative_scan', 'relaxed_order', true);
  perform set_config('hnsw.ef_search', greatest(64, p_limit * 2)::text, true);
  return query
    with hits as materialized (
      select a.id, (a.embedding operator(public.<=>) p_vec) as dist
        from app.articles a
       where a.tenant_id = p_tenant and a.status = 'published' and a.embedding_model = p_model
         and (p_project is null or a.project_id = p_project or a.project_id is null)
         and (p_category is null or a.category = p_category)
       order by a.embedding operator(public.<=>) p_vec
       limit p_limit)
    select h.id, (row_number() over (order by h.dist, h.id))::int, (1 - h.dist)::real
      from hits h order by h.dist, h.id;
end
$$;

-- Search for the caller's tenant; returns ranked rows (no logging, no validation).
create or replace function app.knowledge_search_rows(
  p_tenant uuid, p_query text, p_mode text, p_project uuid, p_category text, p_limit int,
  out rows jsonb, out used_mode text, out fallback text
) language plpgsql volatile as $$
declare
  v_vec public.vector;
  v_pool int := greatest(50, p_limit);
begin
  used_mode := p_mode;
  if p_mode in ('semantic', 'combined') then
    v_vec := app.embed(p_query);
    if v_vec is null then
      used_mode := 'keyword';
      fallback := 'keyword';
    end if;
  end if;
  with kw as (
    select * from app.knowledge_keyword_hits(p_tenant, p_query, p_project, p_category, v_pool)
     where used_mode in ('keyword', 'combined')),
  sem as (
    select * from app.knowledge_semantic_hits(p_tenant, v_vec, app.knowledge_active_model(),
                                              p_project, p_category, v_pool)
     where used_mode in ('semantic', 'combined')),
  fused as (
    select coalesce(k.article_id, s.article_id) as id, k.rank as kw_rank, s.rank as sem_rank,
           k.score as kw_score, s.similarity,
           case used_mode
             when 'keyword' then k.score::float8
             when 'semantic' then s.similarity::float8
             -- reciprocal-rank fusion (k = 60); a keyword hit matching only some of the
             -- query's terms is weighted by coverage² (one shared word of six is noise)
             else coalesce((case when k.all_terms then 1.0 else k.coverage ^ 2 end)
                           / (60 + k.rank), 0)
                  + coalesce(1.0 / (60 + s.rank), 0)
           end as score
      from kw k full join sem s on s.article_id = k.article_id),
  top as (
    select f.*, row_number() over (order by f.score desc, coalesce(f.sem_rank, 1000000),
                                   coalesce(f.kw_rank, 1000000), f.id) as pos
      from fused f order by pos limit p_limit)
  select coalesce(jsonb_agg(jsonb_build_object(
           'id', a.id, 'title', a.title, 'category', a.category, 'tags', to_jsonb(a.tags),
           'project_id', a.project_id, 'score', round(t.score::numeric, 6),
           'keyword_rank', t.kw_rank, 'semantic_rank', t.sem_rank,
           'similarity', round(t.similarity::numeric, 4),
           'snippet', ts_headline('english', left(a.body, 20000),
                                  coalesce(app.knowledge_any_terms(p_query), ''::tsquery),
                                  'MaxWords=30, MinWords=12, MaxFragments=1'))
           order by t.pos), '[]'::jsonb)
    into rows
    from top t join app.articles a on a.tenant_id = p_tenant and a.id = t.id;
end
$$;

create or replace function app.knowledge_check_query(p_query text, p_mode text, p_category text)
returns void language plpgsql immutable as $$
begin
  if p_query is null or length(btrim(p_query)) = 0 then
    perform app.raise_error(422, 'empty_query', 'query must not be empty');
  elsif length(p_query) > 2000 then
    perform app.raise_error(422, 'query_too_long', 'query is longer than 2000 characters');
  end if;
  if p_mode is null or p_mode not in ('keyword', 'semantic', 'combined') then
    perform app.raise_error(422, 'unknown_search_mode', format('unknown mode %L', p_mode),
      jsonb_build_object('allowed', jsonb_build_array('keyword', 'semantic', 'combined')));
  end if;
  if p_category is not null and not (p_category = any (app.knowledge_categories())) then
    perform app.raise_error(422, 'unknown_category', format('unknown category %L', p_category),
      jsonb_build_object('allowed', to_jsonb(app.knowledge_categories())));
  end if;
end
$$;

-- Callable from psql as a key (or through /rpc): keyword | semantic | combined.
create or replace function api.knowledge_search(
  p_query text, p_mode text default 'combined', p_project_id uuid default null,
  p_category text default null, p_limit int default 10
) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
  r record;
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'knowledge_search');
  perform app.knowledge_check_query(p_query, p_mode, p_category);
  perform app.knowledge_check_limit(p_limit, 50);
  select * into r from app.knowledge_search_rows(v_me.tenant_id, p_query, p_mode, p_project_id,
                                                 p_category, p_limit);
  perform app.knowledge_log_reads(v_me,
    array(select (e ->> 'id')::uuid from jsonb_array_elements(r.rows) e), 'search', p_project_id);
  return jsonb_build_object('data', r.rows, 'mode', r.used_mode, 'requested_mode', p_mode)
         || case when r.fallback is not null then jsonb_build_object('fallback', r.fallback)
                 else '{}'::jsonb end;
end
$$;

-- For an agent about to start a story: relevance to the story text mixed with recency
-- (70 / 30), articles linked to the top hits included.
create or replace function api.knowledge_context(p_story_id uuid, p_limit int default 5)
returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
  s app.stories;
  v_text text;
  r record;
  v_data jsonb;
  v_linked jsonb;
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'knowledge_context');
  perform app.knowledge_check_limit(p_limit, 20);
  select * into s from app.stories where tenant_id = v_me.tenant_id and id = p_story_id;
  if not found then
    perform app.raise_error(404, 'story_not_found', 'no such story',
      jsonb_build_object('story_id', p_story_id));
  end if;
  select left(s.title || ' ' || coalesce(s.description, '') || ' '
              || coalesce(string_agg(ac.description, ' '), ''), 1900)
    into v_text
    from app.acceptance_criteria ac where ac.tenant_id = s.tenant_id and ac.story_id = s.id;
  select * into r from app.knowledge_search_rows(v_me.tenant_id, v_text, 'combined',
                                                 s.project_id, null, 30);
  with hits as (
    select (e ->> 'id')::uuid as id, o::int as pos
      from jsonb_array_elements(r.rows) with ordinality x(e, o)),
  scored as (
    select a as art, 0.7 * (1.0 / h.pos)
                + 0.3 * exp(-extract(epoch from now() - coalesce(a.published_at, a.updated_at))
                            / 86400.0 / 90.0) as mix
      from hits h join app.articles a on a.tenant_id = v_me.tenant_id and a.id = h.id
     order by mix desc, a.id limit p_limit)
  select coalesce(jsonb_agg(app.knowledge_article_json(sc.art, false)
                            || jsonb_build_object('score', round(sc.mix::numeric, 4))
                            order by sc.mix desc, (sc.art).id), '[]'::jsonb)
    into v_data from scored sc;
  select coalesce(jsonb_agg(distinct jsonb_build_object('id', a.id, 'title', a.title,
                    'category', a.category, 'link_type', l.link_type,
                    'linked_from', l.from_id)), '[]'::jsonb)
    into v_linked
    from (select (e ->> 'id')::uuid as from_id from jsonb_array_elements(v_data) e) t
    join lateral (select to_article_id as other, link_type, t.from_id
                    from app.article_links
                   where tenant_id = v_me.tenant_id and from_article_id = t.from_id
                  union
                  select from_article_id, link_type, t.from_id from app.article_links
                   where tenant_id = v_me.tenant_id and to_article_id = t.from_id) l on true
    join app.articles a on a.tenant_id = v_me.tenant_id and a.id = l.other
   where a.status = 'published'
     and not exists (select 1 from jsonb_array_elements(v_data) d where (d ->> 'id')::uuid = a.id);
  perform app.knowledge_log_reads(v_me,
    array(select (e ->> 'id')::uuid from jsonb_array_elements(v_data) e), 'context', s.project_id);
  return jsonb_build_object('story_id', s.id, 'data', v_data, 'linked', v_linked,
                            'mode', r.used_mode)
         || case when r.fallback is not null then jsonb_build_object('fallback', r.fallback)
                 else '{}'::jsonb end;
end
$$;

-- == health lint ===========================================================================

create or replace function api.knowledge_lint(p_stale_days int default 180, p_cap int default 20)
returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
  v_t uuid;
  v_res jsonb;
begin
  perform app.require_role(v_me, array['user', 'orchestrator'], 'knowledge_lint');
  perform app.knowledge_check_limit(p_cap, 200);
  perform app.knowledge_check_limit(p_stale_days, 3650);
  v_t := v_me.tenant_id;
  with pub as (select * from app.articles where tenant_id = v_t and status = 'published'),
  stale as (
    select p.id, p.title, p.updated_at from pub p
     where p.updated_at < now() - make_interval(days => p_stale_days)
       and not exists (select 1 from app.article_reads r where r.tenant_id = v_t
                         and r.article_id = p.id
                         and r.read_at > now() - make_interval(days => p_stale_days))),
  orphaned as (
    select p.id, p.title from pub p
     where not exists (select 1 from app.article_links l where l.tenant_id = v_t
                         and (l.from_article_id = p.id or l.to_article_id = p.id))),
  -- contradiction clusters: connected components of the contradicts graph (live articles)
  edges as (
    select l.from_article_id a, l.to_article_id b from app.article_links l
      join app.articles x on x.tenant_id = v_t and x.id = l.from_article_id
      join app.articles y on y.tenant_id = v_t and y.id = l.to_article_id
     where l.tenant_id = v_t and l.link_type = 'contradicts'
       and x.status in ('draft', 'published') and y.status in ('draft', 'published')),
  und as (select a, b from edges union select b, a from edges),
  reach as (
    with recursive r(node, root) as (
      select a, a from und
      union
      select u.b, r.root from r join und u on u.a = r.node)
    select node, min(root::text)::uuid as cluster from r group by node),
  clusters as (
    select r.cluster, jsonb_agg(jsonb_build_object('id', a.id, 'title', a.title)
                                order by a.title) as members, count(*) as size
      from reach r join app.articles a on a.tenant_id = v_t and a.id = r.node
     group by r.cluster),
  -- coverage gaps: active projects with reviews but no published article of their own
  gaps as (
    select p.id, p.name, count(distinct rv.id) as reviews from app.projects p
      join app.stories st on st.tenant_id = v_t and st.project_id = p.id
      join app.reviews rv on rv.tenant_id = v_t and rv.story_id = st.id
     where p.tenant_id = v_t and p.status = 'active'
       and not exists (select 1 from pub x where x.project_id = p.id)
     group by p.id, p.name),
  empty_categories as (
    select c from unnest(app.knowledge_categories()) c
     where not exists (select 1 from pub x where x.category = c)),
  -- broken sources: the review or ingest job an article came from no longer exists
  broken as (
    select a.id, a.title, a.source, a.source_ref from app.articles a
     where a.tenant_id = v_t and a.status in ('draft', 'published')
       and ((a.source = 'review' and not exists (
               select 1 from app.reviews rv where rv.tenant_id = v_t
                  and rv.id::text = a.source_ref))
         or (a.source = 'ingest' and a.source_ref ~ '^job:' and not exists (
               select 1 from app.knowledge_jobs j where j.tenant_id = v_t
                  and 'job:' || j.id::text = a.source_ref)))),
  unembedded as (
    select p.id from pub p where p.embedding_model is distinct from app.knowledge_active_model())
  select jsonb_build_object(
    'stale', jsonb_build_object('count', (select count(*) from stale), 'days', p_stale_days,
      'items', coalesce((select jsonb_agg(jsonb_build_object('id', id, 'title', title,
        'updated_at', updated_at)) from (select * from stale order by updated_at limit p_cap) s),
        '[]'::jsonb)),
    'orphaned', jsonb_build_object('count', (select count(*) from orphaned),
      'items', coalesce((select jsonb_agg(jsonb_build_object('id', id, 'title', title))
        from (select * from orphaned order by title limit p_cap) s), '[]'::jsonb)),
    'contradiction_clusters', jsonb_build_object('count', (select count(*) from clusters),
      'items', coalesce((select jsonb_agg(jsonb_build_object('size', size, 'articles', members))
        from (select * from clusters order by size desc, cluster limit p_cap) s), '[]'::jsonb)),
    'coverage_gaps', jsonb_build_object(
      'count', (select count(*) from gaps) + (select count(*) from empty_categories),
      'projects_without_articles', coalesce((select jsonb_agg(jsonb_build_object(
        'project_id', id, 'name', name, 'reviews', reviews))
        from (select * from gaps order by reviews desc, name limit p_cap) s), '[]'::jsonb),
      'empty_categories', coalesce((select jsonb_agg(c) from empty_categories), '[]'::jsonb)),
    'broken_sources', jsonb_build_object('count', (select count(*) from broken),
      'items', coalesce((select jsonb_agg(jsonb_build_object('id', id, 'title', title,
        'source', source, 'source_ref', source_ref))
        from (select * from broken order by title limit p_cap) s), '[]'::jsonb)),
    'unembedded', jsonb_build_object('count', (select count(*) from unembedded),
      'active_model', app.knowledge_active_model()),
    'cap', p_cap)
  into v_res;
  return v_res;
end
$$;

-- == analytics =============================================================================

create or replace function api.knowledge_analytics_top(p_days int default 30, p_limit int default 10)
returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'knowledge_analytics_top');
  perform app.knowledge_check_limit(p_limit, 100);
  perform app.knowledge_check_limit(p_days, 3650);
  return jsonb_build_object('days', p_days, 'data', coalesce((
    select jsonb_agg(jsonb_build_object('id', a.id, 'title', a.title, 'category', a.category,
             'reads', t.reads, 'readers', t.readers) order by t.reads desc, a.title)
      from (select article_id, count(*) reads, count(distinct coalesce(agent_id, key_id)) readers
              from app.article_reads
             where tenant_id = v_me.tenant_id and read_at > now() - make_interval(days => p_days)
             group by article_id order by count(*) desc, article_id limit p_limit) t
      join app.articles a on a.tenant_id = v_me.tenant_id and a.id = t.article_id), '[]'::jsonb));
end
$$;

create or replace function api.knowledge_unused_articles(p_days int default 30, p_limit int default 20)
returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'knowledge_unused_articles');
  perform app.knowledge_check_limit(p_limit, 200);
  perform app.knowledge_check_limit(p_days, 3650);
  return jsonb_build_object('days', p_days, 'data', coalesce((
    select jsonb_agg(jsonb_build_object('id', a.id, 'title', a.title, 'category', a.category,
             'published_at', a.published_at) order by a.published_at, a.title)
      from (select * from app.articles x
             where x.tenant_id = v_me.tenant_id and x.status = 'published'
               and not exists (select 1 from app.article_reads r
                                where r.tenant_id = x.tenant_id and r.article_id = x.id
                                  and r.read_at > now() - make_interval(days => p_days))
             order by x.published_at, x.title limit p_limit) a), '[]'::jsonb));
end
$$;

create or replace function api.knowledge_agent_usage(p_days int default 30) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  perform app.require_role(v_me, array['user', 'orchestrator'], 'knowledge_agent_usage');
  perform app.knowledge_check_limit(p_days, 3650);
  return jsonb_build_object('days', p_days, 'data', coalesce((
    select jsonb_agg(jsonb_build_object('agent_id', t.agent_id, 'agent', ag.name,
             'reads', t.reads, 'articles', t.articles, 'searches', t.searches)
             order by t.reads desc, ag.name)
      from (select agent_id, count(*) reads, count(distinct article_id) articles,
                   count(*) filter (where via = 'search') searches
              from app.article_reads
             where tenant_id = v_me.tenant_id and read_at > now() - make_interval(days => p_days)
             group by agent_id) t
      left join app.agents ag on ag.tenant_id = v_me.tenant_id and ag.id = t.agent_id),
    '[]'::jsonb));
end
$$;

create or replace function api.knowledge_project_usage(p_days int default 30) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  perform app.require_role(v_me, array['user', 'orchestrator'], 'knowledge_project_usage');
  perform app.knowledge_check_limit(p_days, 3650);
  return jsonb_build_object('days', p_days, 'data', coalesce((
    select jsonb_agg(jsonb_build_object('project_id', p.id, 'project', p.name,
             'published', (select count(*) from app.articles a where a.tenant_id = p.tenant_id
                             and a.project_id = p.id and a.status = 'published'),
             'reads', (select count(*) from app.article_reads r where r.tenant_id = p.tenant_id
                         and r.project_id = p.id
                         and r.read_at > now() - make_interval(days => p_days)))
             order by p.name)
      from app.projects p where p.tenant_id = v_me.tenant_id), '[]'::jsonb));
end
$$;

create or replace function api.knowledge_article_stats(p_id uuid) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
  a app.articles;
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'knowledge_article_stats');
  a := app.knowledge_find(p_id);
  return (select jsonb_build_object('id', a.id, 'title', a.title, 'reads', count(*),
            'readers', count(distinct coalesce(r.agent_id, r.key_id)),
            'by_via', coalesce((select jsonb_object_agg(via, n) from (
                           select via, count(*) n from app.article_reads
                            where tenant_id = a.tenant_id and article_id = a.id group by via) v),
                         '{}'::jsonb),
            'last_read_at', max(r.read_at))
    from app.article_reads r where r.tenant_id = a.tenant_id and r.article_id = a.id);
end
$$;

-- == ingest and the pipeline's visibility ==================================================

-- Pasted text (≤50 items, each a string or {text, title?, category?, tags?, source_ref?})
-- goes through the same extraction pipeline as reviews. All items are validated before any
-- job is queued.
create or replace function api.knowledge_ingest(p_items jsonb, p_project_id uuid default null)
returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
  v_item jsonb;
  v_i int := 0;
  v_norm jsonb := '[]'::jsonb;
  v_out jsonb := '[]'::jsonb;
  v_text text;
  j record;
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'knowledge_ingest');
  if p_items is null or jsonb_typeof(p_items) <> 'array' or jsonb_array_length(p_items) = 0
     or jsonb_array_length(p_items) > 50 then
    perform app.raise_error(422, 'invalid_batch', 'items must be an array of 1 to 50 entries',
      jsonb_build_object('max', 50));
  end if;
  perform app.knowledge_check_project(v_me.tenant_id, p_project_id);
  for v_item in select * from jsonb_array_elements(p_items) loop
    if jsonb_typeof(v_item) = 'string' then
      v_item := jsonb_build_object('text', v_item #>> '{}');
    end if;
    if jsonb_typeof(v_item) <> 'object' or jsonb_typeof(v_item -> 'text') is distinct from 'string' then
      perform app.raise_error(422, 'invalid_item', format('item %s: text is required', v_i),
        jsonb_build_object('index', v_i));
    end if;
    v_text := v_item ->> 'text';
    if length(btrim(v_text)) = 0 then
      perform app.raise_error(422, 'invalid_item', format('item %s: text is empty', v_i),
        jsonb_build_object('index', v_i));
    elsif length(v_text) > 100000 then
      perform app.raise_error(413, 'body_too_large',
        format('item %s: text is longer than 100000 characters', v_i),
        jsonb_build_object('index', v_i, 'length', length(v_text), 'max', 100000));
    end if;
    if v_item ? 'category' and not ((v_item ->> 'category') = any (app.knowledge_categories())) then
      perform app.raise_error(422, 'unknown_category',
        format('item %s: unknown category %L', v_i, v_item ->> 'category'),
        jsonb_build_object('index', v_i, 'allowed', to_jsonb(app.knowledge_categories())));
    end if;
    if v_item ? 'tags' and jsonb_typeof(v_item -> 'tags') <> 'array' then
      perform app.raise_error(422, 'invalid_item', format('item %s: tags must be a list', v_i),
        jsonb_build_object('index', v_i));
    end if;
    if v_item ? 'title' then
      perform app.knowledge_check_fields(v_item ->> 'title', v_text,
        coalesce(v_item ->> 'category', 'finding'),
        array(select jsonb_array_elements_text(coalesce(v_item -> 'tags', '[]'))));
    elsif v_item ? 'tags' then
      perform app.knowledge_check_fields('t', v_text, 'finding',
        array(select jsonb_array_elements_text(v_item -> 'tags')));
    end if;
    v_norm := v_norm || jsonb_build_array(
      jsonb_strip_nulls(jsonb_build_object('text', v_text, 'title', v_item ->> 'title',
        'category', v_item ->> 'category', 'tags', v_item -> 'tags',
        'source_ref', left(v_item ->> 'source_ref', 500), 'project_id', p_project_id,
        'key_id', v_me.key_id, 'agent_id', v_me.agent_id)));
    v_i := v_i + 1;
  end loop;
  v_i := 0;
  for v_item in select * from jsonb_array_elements(v_norm) loop
    select * into j from app.knowledge_enqueue(v_me.tenant_id, 'ingest', v_item,
      app.knowledge_sha(coalesce(p_project_id::text, '') || '|' || (v_item ->> 'text')));
    v_out := v_out || jsonb_build_object('index', v_i, 'job_id', j.job_id,
                                         'duplicate', not j.created);
    v_i := v_i + 1;
  end loop;
  return jsonb_build_object('jobs', v_out);
end
$$;

create or replace function app.knowledge_job_json(j app.knowledge_jobs) returns jsonb
language sql stable as $$
  select jsonb_build_object('id', j.id, 'kind', j.kind, 'status', j.status,
    'attempts', j.attempts, 'max_attempts', j.max_attempts, 'run_after', j.run_after,
    'last_error', j.last_error, 'result', j.result, 'created_at', j.created_at,
    'finished_at', j.finished_at,
    'source', coalesce(j.payload ->> 'review_id', j.payload ->> 'article_id',
                       j.payload ->> 'source_ref'))
$$;

create or replace function api.knowledge_ingestion_jobs(
  p_kind text default null, p_status text default null, p_limit int default 20
) returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'knowledge_ingestion_jobs');
  perform app.knowledge_check_limit(p_limit, 200);
  return jsonb_build_object('data', coalesce((
    select jsonb_agg(app.knowledge_job_json(j) order by j.created_at desc, j.id)
      from (select * from app.knowledge_jobs x
             where x.tenant_id = v_me.tenant_id
               and (p_kind is null or x.kind = p_kind) and (p_status is null or x.status = p_status)
             order by x.created_at desc, x.id limit p_limit) j), '[]'::jsonb));
end
$$;

create or replace function api.knowledge_pipeline() returns jsonb
language plpgsql stable security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'knowledge_pipeline');
  return jsonb_build_object(
    'jobs', coalesce((select jsonb_object_agg(kind, counts) from (
        select kind, jsonb_object_agg(status, n) counts from (
          select kind, status, count(*) n from app.knowledge_jobs
           where tenant_id = v_me.tenant_id group by kind, status) s group by kind) k),
      '{}'::jsonb),
    'oldest_pending', (select min(created_at) from app.knowledge_jobs
                        where tenant_id = v_me.tenant_id and status in ('pending', 'failed')),
    'articles', coalesce((select jsonb_object_agg(status, n) from (
        select status, count(*) n from app.articles where tenant_id = v_me.tenant_id
         group by status) s), '{}'::jsonb),
    'embedding', jsonb_build_object('active_model', app.knowledge_active_model(),
      'published_embedded', (select count(*) from app.articles where tenant_id = v_me.tenant_id
          and status = 'published' and embedding_model = app.knowledge_active_model()),
      'published_pending', (select count(*) from app.articles where tenant_id = v_me.tenant_id
          and status = 'published'
          and embedding_model is distinct from app.knowledge_active_model())));
end
$$;

-- == export ================================================================================

-- Published articles with their related titles: the data behind the Obsidian vault ZIP.
create or replace function api.knowledge_export(p_project_id uuid default null) returns jsonb
language plpgsql volatile security definer set search_path = pg_catalog, app as $$
declare
  v_me app.identity := app.require_identity();
  v_rows jsonb;
begin
  perform app.require_role(v_me, array['user', 'orchestrator', 'agent'], 'knowledge_export');
  perform app.knowledge_check_project(v_me.tenant_id, p_project_id);
  select coalesce(jsonb_agg(app.knowledge_article_json(a) || jsonb_build_object('related',
           coalesce((select jsonb_agg(jsonb_build_object('id', o.id, 'title', o.title,
                       'slug', o.slug, 'link_type', l.link_type) order by o.title)
              from app.article_links l
              join app.articles o on o.tenant_id = a.tenant_id
                                 and o.id = case when l.from_article_id = a.id
                                                 then l.to_article_id else l.from_article_id end
             where l.tenant_id = a.tenant_id
               and (l.from_article_id = a.id or l.to_article_id = a.id)
               and o.status = 'published'
               and (p_project_id is null or o.project_id = p_project_id or o.project_id is null)),
           '[]'::jsonb)) order by a.category, a.slug), '[]'::jsonb)
    into v_rows
    from app.articles a
   where a.tenant_id = v_me.tenant_id and a.status = 'published'
     and (p_project_id is null or a.project_id = p_project_id or a.project_id is null);
  perform app.knowledge_log_reads(v_me,
    array(select (e ->> 'id')::uuid from jsonb_array_elements(v_rows) e), 'export', p_project_id);
  return jsonb_build_object('articles', v_rows);
end
$$;

-- == worker side (run by the worker's privileged connection; not granted to API roles) ====

-- Every review-complete queues an extraction job (tenant setting knowledge_auto_extract).
create or replace function app.knowledge_on_review() returns trigger
language plpgsql volatile as $$
begin
  if coalesce((app.tenant_settings(new.tenant_id) ->> 'knowledge_auto_extract')::boolean, true)
     and (jsonb_typeof(new.findings) = 'array' and jsonb_array_length(new.findings) > 0
          or length(btrim(coalesce(new.summary, ''))) > 0) then
    perform app.knowledge_enqueue(new.tenant_id, 'extract',
      jsonb_build_object('review_id', new.id, 'story_id', new.story_id),
      app.knowledge_sha('review|' || new.id::text));
  end if;
  return null;
end
$$;

drop trigger if exists knowledge_extract_on_review on app.reviews;
create trigger knowledge_extract_on_review after insert on app.reviews
  for each row execute function app.knowledge_on_review();

-- Claims up to p_limit runnable jobs (pending, failed past their backoff, or running with an
-- expired lease) with SKIP LOCKED, so several workers never take the same job.
create or replace function app.knowledge_claim_jobs(
  p_worker text, p_limit int default 10, p_lease_seconds int default 300
) returns setof app.knowledge_jobs language plpgsql volatile as $$
begin
  -- a lease that expired on the last allowed attempt: the job is dead
  update app.knowledge_jobs set status = 'dead', lease_until = null, updated_at = now(),
         last_error = coalesce(last_error, 'lease expired'), finished_at = now()
   where status = 'running' and lease_until < now() and attempts >= max_attempts;
  return query
    update app.knowledge_jobs j
       set status = 'running', attempts = j.attempts + 1, locked_by = p_worker,
           lease_until = now() + make_interval(secs => p_lease_seconds), updated_at = now()
     where (j.tenant_id, j.id) in (
             select c.tenant_id, c.id from app.knowledge_jobs c
              where (c.status in ('pending', 'failed') and c.run_after <= now())
                 or (c.status = 'running' and c.lease_until < now())
              order by c.run_after, c.created_at
              limit p_limit
              for update skip locked)
    returning j.*;
end
$$;

create or replace function app.knowledge_complete_job(
  p_tenant uuid, p_id uuid, p_worker text, p_result jsonb
) returns boolean language sql volatile as $$
  update app.knowledge_jobs
     set status = 'done', result = p_result, lease_until = null, last_error = null,
         finished_at = now(), updated_at = now()
   where tenant_id = p_tenant and id = p_id and locked_by = p_worker and status = 'running'
  returning true
$$;

-- Exponential backoff with jitter: ~30 s, 2 min, 8 min, 32 min, capped at 2 h.
create or replace function app.knowledge_backoff(p_attempts int) returns interval
language sql volatile as $$
  select make_interval(secs => least(7200, 30 * power(4, greatest(p_attempts, 1) - 1))
                               * (0.8 + random() * 0.4))
$$;

create or replace function app.knowledge_fail_job(
  p_tenant uuid, p_id uuid, p_worker text, p_error text
) returns text language sql volatile as $$
  update app.knowledge_jobs
     set status = case when attempts >= max_attempts then 'dead' else 'failed' end,
         run_after = now() + app.knowledge_backoff(attempts),
         last_error = left(p_error, 2000), lease_until = null, updated_at = now(),
         finished_at = case when attempts >= max_attempts then now() end
   where tenant_id = p_tenant and id = p_id and locked_by = p_worker and status = 'running'
  returning status
$$;

-- The review (and its story) behind an extraction job.
create or replace function app.knowledge_review_source(p_tenant uuid, p_review uuid)
returns jsonb language sql stable as $$
  select jsonb_build_object('review_id', r.id, 'review_type', r.review_type,
           'summary', r.summary, 'findings', r.findings, 'project_id', s.project_id,
           'story_id', s.id, 'story_number', s.number, 'story_title', s.title,
           'reviewer_agent_id', r.reviewer_agent_id, 'reviewer_key_id', r.reviewer_key_id)
    from app.reviews r join app.stories s on s.tenant_id = r.tenant_id and s.id = r.story_id
   where r.tenant_id = p_tenant and r.id = p_review
$$;

-- Inserts an extracted draft; null when a live article already has the title (dedupe).
create or replace function app.knowledge_insert_draft(
  p_tenant uuid, p_project uuid, p_title text, p_body text, p_category text, p_tags text[],
  p_source text, p_source_ref text, p_key uuid default null, p_agent uuid default null
) returns uuid language plpgsql volatile as $$
declare
  v_tags text[];
  v_id uuid;
  v_title text := left(btrim(p_title), 300);
begin
  v_tags := app.knowledge_check_fields(v_title, left(p_body, 100000), p_category,
    array(select t from unnest(p_tags) t
           where lower(btrim(t)) ~ '^[a-z0-9][a-z0-9._/+#-]{0,49}$' limit 20));
  if exists (select 1 from app.articles where tenant_id = p_tenant
               and lower(title) = lower(v_title) and status in ('draft', 'published')) then
    return null;
  end if;
  insert into app.articles (tenant_id, project_id, title, slug, body, category, tags, source,
                            source_ref, created_by_key_id, created_by_agent_id)
  values (p_tenant, p_project, v_title, app.knowledge_unique_slug(p_tenant, v_title, null),
          left(p_body, 100000), p_category, v_tags, p_source, p_source_ref, p_key, p_agent)
  on conflict do nothing
  returning id into v_id;
  if v_id is not null then
    perform app.emit_event(p_tenant, 'article.created',
      jsonb_build_object('article_id', v_id, 'title', v_title, 'status', 'draft',
                         'source', p_source), p_project, 'article', v_id);
  end if;
  return v_id;
end
$$;

-- What the worker embeds for an article and the hash that marks the vector current.
create or replace function app.knowledge_embed_source(
  p_tenant uuid, p_article uuid,
  out status text, out body text, out content_hash text, out embedding_model text,
  out embedded_hash text
) language sql stable as $$
  select a.status, app.knowledge_embed_text(a),
         app.knowledge_sha(app.knowledge_embed_text(a)), a.embedding_model, a.embedded_hash
    from app.articles a where a.tenant_id = p_tenant and a.id = p_article
$$;

-- Stores a vector only if the article still has the content it was computed from.
create or replace function app.knowledge_store_embedding(
  p_tenant uuid, p_article uuid, p_vec public.vector, p_model text, p_hash text
) returns boolean language sql volatile as $$
  update app.articles
     set embedding = p_vec, embedding_model = p_model, embedded_hash = p_hash
   where tenant_id = p_tenant and id = p_article
     and app.knowledge_sha(app.knowledge_embed_text(articles)) = p_hash
  returning true
$$;

-- Auto-links a published article to the most similar published articles of its tenant
-- (cosine similarity ≥ p_threshold, at most p_max), both directions recorded once.
create or replace function app.knowledge_autolink(
  p_tenant uuid, p_article uuid, p_threshold real default 0.6, p_max int default 5
) returns int language plpgsql volatile as $$
declare
  a app.articles;
  v_n int;
begin
  select * into a from app.articles where tenant_id = p_tenant and id = p_article;
  if not found or a.embedding is null or a.status <> 'published' then
    return 0;
  end if;
  with near as (
    select h.article_id, h.similarity
      from app.knowledge_semantic_hits(p_tenant, a.embedding, a.embedding_model, null, null,
                                       p_max + 1) h
     where h.article_id <> a.id and h.similarity >= p_threshold
     order by h.rank limit p_max),
  ins as (
    insert into app.article_links (tenant_id, from_article_id, to_article_id, link_type,
                                   score, origin)
    select p_tenant, a.id, n.article_id, 'relates_to', n.similarity, 'auto' from near n
     where not exists (select 1 from app.article_links l
                        where l.tenant_id = p_tenant and l.link_type = 'relates_to'
                          and l.from_article_id = n.article_id and l.to_article_id = a.id)
    on conflict do nothing
    returning 1)
  select count(*) into v_n from ins;
  return v_n;
end
$$;

-- Changing the active model re-embeds in the background: queue embed jobs for published
-- articles whose vector is missing or from another model.
create or replace function app.knowledge_queue_reembed(p_limit int default 500)
returns int language plpgsql volatile as $$
declare
  r record;
  v_n int := 0;
begin
  for r in select tenant_id, id from app.articles
            where status = 'published'
              and embedding_model is distinct from app.knowledge_active_model()
              and not exists (select 1 from app.knowledge_jobs j
                               where j.tenant_id = articles.tenant_id and j.kind = 'embed'
                                 and (j.status in ('pending', 'running', 'failed')
                                      or (j.status = 'dead'
                                          and j.finished_at > now() - interval '1 hour'))
                                 and j.payload ->> 'article_id' = articles.id::text)
            limit p_limit loop
    perform app.knowledge_queue_embed(r.tenant_id, r.id);
    v_n := v_n + 1;
  end loop;
  return v_n;
end
$$;

reset role;
