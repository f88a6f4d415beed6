-- Verify loopctl:knowledge_tables on pg
select tenant_id, id, project_id, title, slug, body, category, tags, status, source, source_ref,
       embedding, embedding_model, embedded_hash, fts, published_at
  from app.articles where false;
select tenant_id, from_article_id, to_article_id, link_type, score, origin
  from app.article_links where false;
select tenant_id, id, article_id, key_id, agent_id, via, read_at from app.article_reads where false;
select tenant_id, id, kind, status, payload, content_hash, attempts, run_after, lease_until
  from app.knowledge_jobs where false;
select 1 / (count(*) = 1)::int from pg_indexes where indexname = 'articles_embedding_hnsw';
