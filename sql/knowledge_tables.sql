-- Knowledge wiki (SPEC §9): articles, links between them, the read log and the extraction /
-- embedding job queue. Every primary and foreign key leads with tenant_id; RLS is forced by
-- policies/tenancy.sql like every other table of app.
set role loopctl_owner;

create table app.articles (
  tenant_id        uuid not null references app.tenants (id) on delete cascade,
  id               uuid not null default gen_random_uuid(),
  -- null: tenant-wide knowledge, visible from every project.
  project_id       uuid,
  title            text not null check (length(btrim(title)) between 1 and 300),
  slug             text not null check (slug ~ '^[a-z0-9][a-z0-9-]{0,99}$'),
  body             text not null check (length(btrim(body)) between 1 and 100000),
  category         text not null check (category in
                     ('pattern', 'convention', 'decision', 'finding', 'reference')),
  tags             text[] not null default '{}'
                     check (cardinality(tags) <= 20 and array_position(tags, null) is null),
  status           text not null default 'draft'
                     check (status in ('draft', 'published', 'archived', 'superseded')),
  source           text not null default 'manual' check (source in ('review', 'ingest', 'manual')),
  -- review id (source review), ingest job id (source ingest) or free text.
  source_ref       text check (length(source_ref) <= 2000),
  -- One active model per installation; the model is recorded with every vector so a model
  -- change is visible row by row (and re-embedded in the background).
  embedding        public.vector(384),
  embedding_model  text,
  embedded_hash    text,
  fts              tsvector generated always as (
                     setweight(to_tsvector('english'::regconfig, title), 'A')
                     || setweight(array_to_tsvector(tags), 'A')
                     || setweight(to_tsvector('english'::regconfig, body), 'B')) stored,
  created_by_key_id   uuid,
  created_by_agent_id uuid,
  published_at     timestamptz,
  created_at       timestamptz not null default now(),
  updated_at       timestamptz not null default now(),
  primary key (tenant_id, id),
  foreign key (tenant_id, project_id) references app.projects (tenant_id, id)
    on delete set null (project_id),
  check ((embedding is null) = (embedding_model is null))
);
-- Titles (case-insensitively) and slugs are unique per tenant among live articles.
create unique index articles_live_title on app.articles (tenant_id, lower(title))
  where status in ('draft', 'published');
create unique index articles_live_slug on app.articles (tenant_id, slug)
  where status in ('draft', 'published');
create index articles_by_status on app.articles (tenant_id, status, project_id);
create index articles_fts on app.articles using gin (fts);
-- Cosine HNSW over every tenant's vectors: queries add the tenant filter and run with
-- hnsw.iterative_scan so a filtered search still returns its k rows.
create index articles_embedding_hnsw on app.articles
  using hnsw (embedding public.vector_cosine_ops);
create index articles_stale_model on app.articles (embedding_model)
  where status = 'published';

create table app.article_links (
  tenant_id        uuid not null references app.tenants (id) on delete cascade,
  from_article_id  uuid not null,
  to_article_id    uuid not null,
  link_type        text not null
                     check (link_type in ('relates_to', 'derived_from', 'contradicts', 'supersedes')),
  -- cosine similarity for automatic links, null for manual ones
  score            real,
  origin           text not null default 'manual' check (origin in ('manual', 'auto')),
  created_at       timestamptz not null default now(),
  primary key (tenant_id, from_article_id, to_article_id, link_type),
  check (from_article_id <> to_article_id),
  foreign key (tenant_id, from_article_id) references app.articles (tenant_id, id)
    on delete cascade,
  foreign key (tenant_id, to_article_id) references app.articles (tenant_id, id)
    on delete cascade
);
create index article_links_reverse on app.article_links (tenant_id, to_article_id);

create table app.article_reads (
  tenant_id   uuid not null references app.tenants (id) on delete cascade,
  id          bigint generated always as identity,
  article_id  uuid not null,
  key_id      uuid,
  agent_id    uuid,
  project_id  uuid,
  via         text not null check (via in ('get', 'search', 'context', 'export')),
  read_at     timestamptz not null default now(),
  primary key (tenant_id, id),
  foreign key (tenant_id, article_id) references app.articles (tenant_id, id) on delete cascade
);
create index article_reads_by_article on app.article_reads (tenant_id, article_id, read_at);
comment on table app.article_reads is
  '[no-audit] knowledge access log (usage analytics): high-volume, not a state change';

create table app.knowledge_jobs (
  tenant_id     uuid not null references app.tenants (id) on delete cascade,
  id            uuid not null default gen_random_uuid(),
  kind          text not null check (kind in ('extract', 'ingest', 'embed')),
  status        text not null default 'pending'
                  check (status in ('pending', 'running', 'done', 'failed', 'dead')),
  payload       jsonb not null check (jsonb_typeof(payload) = 'object'
                                      and pg_column_size(payload) <= 300000),
  -- Deduplication: the same work (same review, same pasted text, same article content and
  -- model) is queued once.
  content_hash  text not null check (content_hash ~ '^[0-9a-f]{64}$'),
  attempts      integer not null default 0 check (attempts >= 0),
  max_attempts  integer not null default 5 check (max_attempts between 1 and 20),
  run_after     timestamptz not null default now(),
  lease_until   timestamptz,
  locked_by     text,
  last_error    text,
  result        jsonb,
  created_at    timestamptz not null default now(),
  updated_at    timestamptz not null default now(),
  finished_at   timestamptz,
  primary key (tenant_id, id),
  unique (tenant_id, kind, content_hash)
);
create index knowledge_jobs_ready on app.knowledge_jobs (run_after)
  where status in ('pending', 'failed', 'running');
comment on table app.knowledge_jobs is
  '[no-audit] knowledge extraction / embedding queue (claimed with SKIP LOCKED + lease)';

reset role;
