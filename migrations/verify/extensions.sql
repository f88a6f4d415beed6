-- Verify loopctl:extensions on pg: fails (division by zero) unless all four exist.
select 1 / (count(*) = 4)::int
  from pg_extension where extname in ('vector', 'plpython3u', 'pg_trgm', 'pgcrypto');
select '[1,2]'::vector <-> '[1,3]'::vector;
