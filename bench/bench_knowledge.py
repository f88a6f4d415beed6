"""Knowledge search at 10k and 100k articles: latency of api.knowledge_search per mode
(keyword / semantic / combined, called as a user key, query embedding fetched over HTTP by
app.embed) and HNSW recall against exact search under the same tenant filter.

Synthetic data keeps it fast: 384-d vectors drawn around 200 cluster centres, bodies of 30
words from a 3000-word vocabulary, 10 tenants (the measured tenant holds 10 % of the rows,
a small one 1 %). The embeddings endpoint is a synthetic embedder (a seeded vector near one
centre) served through the real /v1/embeddings route. Baseline side by side: the same
semantic query as an exact scan (index off), and HNSW without iterative scans.

    PYTHONPATH=service .venv/bin/python bench/bench_knowledge.py [--sizes 10000,100000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from loopctl.knowledge.embeddings import vector_literal
from loopctl.knowledge.testsupport import EmbeddingServer, point_database_at
from loopctl.testing import Key, TestServer, create_tenant

DIM, CENTRES, VOCAB, TENANTS = 384, 200, 3000, 10
rng = np.random.default_rng(7)
CENTRE_VECS = rng.normal(size=(CENTRES, DIM)).astype(np.float32)
WORDS = [f"w{hashlib.md5(str(i).encode()).hexdigest()[:6]}" for i in range(VOCAB)]


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


class SyntheticEmbedder:
    """A text's vector: near the centre its hash picks (stands in for the model)."""

    model_name = "all-MiniLM-L6-v2"

    def embed(self, texts: list[str]) -> list[list[float]]:
        out = []
        for t in texts:
            seed = int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)
            r = np.random.default_rng(seed)
            v = CENTRE_VECS[seed % CENTRES] + r.normal(scale=0.6, size=DIM)
            out.append(unit(v).tolist())
        return out


def load(admin: psycopg.Connection[Any], tenants: list[str], start: int, stop: int) -> None:
    """Rows start..stop-1: tenant 0 gets 10 %, tenant 1 gets 1 %, the rest share the rest."""
    n = stop - start
    centre = rng.integers(0, CENTRES, size=n)
    vecs = unit(CENTRE_VECS[centre] + rng.normal(scale=0.6, size=(n, DIM))).astype(np.float32)
    pick = rng.random(n)
    owner = np.where(pick < 0.10, 0, np.where(pick < 0.11, 1, 2 + (np.arange(n) % 8)))
    with admin.transaction():
        admin.execute("set local session_replication_role = replica")  # no audit trail rows
        with admin.cursor().copy(
                "copy app.articles (tenant_id, title, slug, body, category, status, source, "
                "embedding, embedding_model, published_at) from stdin (format binary)") as cp:
            cp.set_types(["uuid", "text", "text", "text", "text", "text", "text", "vector",
                          "text", "timestamptz"])
            now = datetime.now(UTC)
            for i in range(n):
                words = random.choices(WORDS, k=30)
                cp.write_row((uuid.UUID(tenants[owner[i]]), f"Article {start + i} {words[0]}",
                              f"a-{start + i}", " ".join(words), "finding", "published",
                              "manual", vecs[i], "all-MiniLM-L6-v2", now))


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def as_key_tx(conn: psycopg.Connection[Any], key: Key) -> None:
    conn.execute("set local role loopctl_user")
    conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(key.claims),))


def latency(conn: psycopg.Connection[Any], key: Key, mode: str, queries: list[str]) -> list[float]:
    times = []
    for q in queries:
        t0 = time.perf_counter()
        with conn.transaction():
            as_key_tx(conn, key)
            conn.execute("select api.knowledge_search(%s, %s, null, null, 10)", (q, mode))
        times.append((time.perf_counter() - t0) * 1000)
    return times


def semantic_sql(conn: psycopg.Connection[Any], tenant: str, vec: list[float], how: str,
                 k: int = 10) -> tuple[list[str], float]:
    """One filtered top-k by cosine: 'hnsw' (iterative scan, as the API does), 'hnsw_plain'
    (no iterative scan) or 'exact' (index off)."""
    with conn.transaction():
        if how == "exact":
            conn.execute("set local enable_indexscan = off")
            conn.execute("set local enable_bitmapscan = off")
        else:
            conn.execute("set local enable_seqscan = off")
        t0 = time.perf_counter()
        if how == "hnsw":
            rows = conn.execute("select article_id::text from app.knowledge_semantic_hits("
                                "%s, %s::vector, 'all-MiniLM-L6-v2', null, null, %s)",
                                (tenant, vector_literal(vec), k)).fetchall()
        else:
            conn.execute("set local hnsw.iterative_scan = off")
            rows = conn.execute(
                "select id::text from app.articles where tenant_id = %s and status = "
                "'published' and embedding_model = 'all-MiniLM-L6-v2' "
                "order by embedding <=> %s::vector limit %s",
                (tenant, vector_literal(vec), k)).fetchall()
        ms = (time.perf_counter() - t0) * 1000
    return [r[0] for r in rows], ms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--queries", type=int, default=60)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    server = TestServer()
    server.start()
    emb = EmbeddingServer(SyntheticEmbedder()).start()  # type: ignore[arg-type]
    try:
        _, url = server.clone()
        with psycopg.connect(url, autocommit=True) as admin:
            register_vector(admin)
            point_database_at(admin, emb.url)
            ts = [create_tenant(admin) for _ in range(TENANTS)]
            tenants = [t.id for t in ts]
            big, small = ts[0], ts[1]
            queries = [" ".join(random.choices(WORDS, k=2)) for _ in range(args.queries)]
            loaded = 0
            print(f"{'articles':>9} {'mode':<22} {'p50 ms':>8} {'p99 ms':>8}")
            for size in sizes:
                t0 = time.perf_counter()
                admin.execute("drop index if exists app.articles_embedding_hnsw")
                load(admin, tenants, loaded, size)
                loaded = size
                admin.execute("set maintenance_work_mem = '512MB'")
                admin.execute("create index articles_embedding_hnsw on app.articles "
                              "using hnsw (embedding vector_cosine_ops)")
                admin.execute("analyze app.articles")
                print(f"  (loaded {size} rows and built HNSW in "
                      f"{time.perf_counter() - t0:.0f} s)")
                for mode in ("keyword", "semantic", "combined"):
                    latency(admin, big.user_key, mode, queries[:5])  # warm up
                    t = latency(admin, big.user_key, mode, queries)
                    print(f"{size:>9} {'api ' + mode:<22} {pct(t, 50):8.1f} {pct(t, 99):8.1f}")
                qvecs = SyntheticEmbedder().embed(queries)
                for label, tenant in (("10% tenant", big.id), ("1% tenant", small.id)):
                    res: dict[str, tuple[list[list[str]], list[float]]] = {}
                    for how in ("exact", "hnsw", "hnsw_plain"):
                        runs = [semantic_sql(admin, tenant, v, how) for v in qvecs]
                        res[how] = ([r[0] for r in runs], [r[1] for r in runs])
                    exact_ids = res["exact"][0]
                    for how in ("exact", "hnsw", "hnsw_plain"):
                        got = res[how][0]
                        recall = statistics.mean(
                            len(set(g) & set(e)) / max(1, len(e)) for g, e in zip(got, exact_ids,
                                                                                strict=True))
                        rows = statistics.mean(len(g) for g in got)
                        t = res[how][1]
                        ratio = pct(res["exact"][1], 50) / max(pct(t, 50), 1e-6)
                        print(f"{size:>9} {how + ' ' + label:<22} {pct(t, 50):8.1f} "
                              f"{pct(t, 99):8.1f}  recall@10={recall:.3f} rows={rows:.1f} "
                              f"speed-up vs exact x{ratio:.1f}")
    finally:
        emb.stop()
        server.stop()


if __name__ == "__main__":
    main()
