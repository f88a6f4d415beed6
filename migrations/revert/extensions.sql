-- Revert loopctl:extensions from pg
begin;
drop extension if exists pgcrypto;
drop extension if exists pg_trgm;
drop extension if exists plpython3u;
drop extension if exists vector;
commit;
