-- Revert loopctl:knowledge_tables from pg
begin;
drop table if exists app.knowledge_jobs, app.article_reads, app.article_links, app.articles cascade;
commit;
