-- Extensions loopctl needs. Created by the migration (superuser), never by the app.
create extension if not exists vector;      -- pgvector: article embeddings, HNSW search
create extension if not exists plpython3u;  -- in-database work SQL does badly (embed(text))
create extension if not exists pg_trgm;     -- fuzzy title matching, trigram indexes
create extension if not exists pgcrypto;    -- hmac() for webhook signatures, digest()
