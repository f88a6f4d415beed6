"""Knowledge search: retrieval quality on a labelled set (keyword vs semantic vs combined),
tenant isolation of every mode (also against planted near-duplicate vectors that an HNSW
scan would return first), and the keyword fallback when no embedding is available."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from loopctl.knowledge.embeddings import LocalEmbedder, vector_literal
from loopctl.knowledge.jobs import JobContext, run_until_idle
from loopctl.knowledge.testsupport import EmbeddingServer, point_database_at
from loopctl.testing import Key, as_key, create_tenant

DATA = json.loads((Path(__file__).parent / "data" / "knowledge_retrieval.json").read_text())
MODES = ("keyword", "semantic", "combined")


@pytest.fixture(scope="module")
def embedding_server() -> Iterator[EmbeddingServer]:
    server = EmbeddingServer().start()
    yield server
    server.stop()


def call(conn: psycopg.Connection[Any], key: Key, fn: str, *args: Any,
         commit: bool = True) -> Any:
    placeholders = ", ".join(["%s"] * len(args))
    with as_key(conn, key, commit=commit) as c:
        row = c.execute(f"select api.{fn}({placeholders})", args).fetchone()
    assert row is not None
    return row[0]


def search(conn: psycopg.Connection[Any], key: Key, query: str, mode: str,
           limit: int = 10) -> dict[str, Any]:
    with as_key(conn, key) as c:
        row = c.execute("select api.knowledge_search(%s, %s, null, null, %s)",
                        (query, mode, limit)).fetchone()
    assert row is not None
    return row[0]


@pytest.fixture(scope="module")
def corpus(module_db: str, embedding_server: EmbeddingServer) -> Iterator[dict[str, Any]]:
    with psycopg.connect(module_db, autocommit=True) as admin:
        point_database_at(admin, embedding_server.url)
        tenant = create_tenant(admin)
        ids: dict[str, str] = {}
        for art in DATA["articles"]:
            created = call(admin, tenant.user_key, "knowledge_create", art["title"], art["body"],
                           art["category"], art["tags"])
            ids[art["key"]] = created["article"]["id"]
        published = call(admin, tenant.user_key, "knowledge_bulk_publish", list(ids.values()))
        assert published["published"] == len(ids)
        run_until_idle(admin, JobContext(embedder=embedding_server.embedder))
        yield {"admin": admin, "tenant": tenant, "ids": ids}


def test_paraphrases_share_no_content_words_with_their_article(corpus: dict[str, Any]) -> None:
    admin = corpus["admin"]
    by_key = {a["key"]: a for a in DATA["articles"]}
    paraphrases = [q for q in DATA["queries"] if q["kind"] == "paraphrase"]
    assert len(DATA["articles"]) >= 30 and len(DATA["queries"]) >= 30 and len(paraphrases) >= 15
    for q in paraphrases:
        art = by_key[q["target"]]
        row = admin.execute(
            "select array(select unnest(tsvector_to_array(to_tsvector('english', %s))) "
            "intersect select unnest(tsvector_to_array(to_tsvector('english', %s))))",
            (q["q"], " ".join([art["title"], art["body"], *art["tags"]]))).fetchone()
        assert row is not None and row[0] == [], (q["q"], row)


def evaluate(corpus: dict[str, Any], queries: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for mode in MODES:
        hits5 = rr = 0.0
        for q in queries:
            res = search(corpus["admin"], corpus["tenant"].user_key, q["q"], mode)
            assert "fallback" not in res, res
            ranked = [r["id"] for r in res["data"]]
            target = corpus["ids"][q["target"]]
            if target in ranked:
                pos = ranked.index(target) + 1
                hits5 += pos <= 5
                rr += 1.0 / pos
        out[mode] = {"recall@5": hits5 / len(queries), "mrr": rr / len(queries)}
    return out


def test_retrieval_quality(corpus: dict[str, Any]) -> None:
    groups = {"all": DATA["queries"],
              "keyword-style": [q for q in DATA["queries"] if q["kind"] == "keyword"],
              "paraphrase": [q for q in DATA["queries"] if q["kind"] == "paraphrase"]}
    report = {name: evaluate(corpus, qs) for name, qs in groups.items()}
    print(f"\nretrieval quality ({len(DATA['articles'])} articles)")
    for name, res in report.items():
        for mode in MODES:
            print(f"  {name:14s} {mode:9s} recall@5={res[mode]['recall@5']:.3f} "
                  f"MRR={res[mode]['mrr']:.3f}  (n={len(groups[name])})")
    para = report["paraphrase"]
    # Paraphrases share no word with their article: keyword search cannot find them, the
    # model must. A clear margin, not a tie.
    assert para["semantic"]["recall@5"] >= para["keyword"]["recall@5"] + 0.7
    assert para["combined"]["recall@5"] >= para["keyword"]["recall@5"] + 0.7
    assert para["semantic"]["mrr"] >= para["keyword"]["mrr"] + 0.6
    assert para["combined"]["mrr"] >= para["keyword"]["mrr"] + 0.5
    # Keyword-style queries stay well served by every mode (fusion must not bury them).
    kw = report["keyword-style"]
    assert kw["keyword"]["recall@5"] >= 0.9
    assert kw["combined"]["recall@5"] >= 0.9


def test_search_results_carry_snippets_and_ranks(corpus: dict[str, Any]) -> None:
    res = search(corpus["admin"], corpus["tenant"].user_key, "thundering herd jitter",
                 "combined")
    top = res["data"][0]
    assert top["id"] == corpus["ids"]["retry"]
    assert top["keyword_rank"] == 1 and top["semantic_rank"] is not None
    assert "<b>" in top["snippet"]
    assert res["mode"] == "combined"


def test_tenant_isolation_against_planted_near_duplicates(corpus: dict[str, Any]) -> None:
    """Another tenant holds 300 articles whose vectors equal the query's and whose text
    matches it word for word, plus unembedded ones: an unfiltered HNSW scan would return
    them first. Tenant A must still get exactly its own results, in every mode, with and
    without the index forced."""
    admin, key, ids = corpus["admin"], corpus["tenant"].user_key, corpus["ids"]
    query = "when a callback target is down, how long should we pause before trying again?"
    [vec] = LocalEmbedder().embed([query])
    other = create_tenant(admin)
    admin.execute(
        "insert into app.articles (tenant_id, title, slug, body, category, status, embedding, "
        " embedding_model, published_at) "
        "select %s, 'Planted ' || i || ' ' || %s, 'planted-' || i, %s, 'finding', 'published', "
        "       case when i <= 300 then %s::vector end, "
        "       case when i <= 300 then app.knowledge_active_model() end, now() "
        "  from generate_series(1, 330) i",
        (other.id, query, query, vector_literal(vec)))
    mine = set(ids.values())
    for force_index in (False, True):
        for mode in MODES:
            with as_key(admin, key) as c:
                if force_index:
                    c.execute("set local enable_seqscan = off")
                res = c.execute("select api.knowledge_search(%s, %s, null, null, 10)",
                                (query, mode)).fetchone()[0]
            got = [r["id"] for r in res["data"]]
            assert set(got) <= mine, (mode, force_index)
            if mode != "keyword":
                assert len(got) == 10, (mode, force_index, len(got))
                assert ids["retry"] in got[:5], (mode, force_index)
    # And the other way round: tenant B sees only its planted rows.
    with as_key(admin, other.user_key) as c:
        res = c.execute("select api.knowledge_search(%s, 'combined', null, null, 50)",
                        (query,)).fetchone()[0]
    assert res["data"] and not {r["id"] for r in res["data"]} & mine
    # Semantic search of B returns only embedded rows of B.
    with as_key(admin, other.user_key) as c:
        res = c.execute("select api.knowledge_search(%s, 'semantic', null, null, 50)",
                        (query,)).fetchone()[0]
    assert len(res["data"]) == 50 and all(r["similarity"] > 0.99 for r in res["data"])


def test_embeddings_route_is_openai_compatible(embedding_server: EmbeddingServer) -> None:
    import httpx

    ok = httpx.post(embedding_server.url, json={"input": ["a", "b"], "model": "all-MiniLM-L6-v2"},
                    timeout=30)
    assert ok.status_code == 200
    body = ok.json()
    assert body["object"] == "list" and [d["index"] for d in body["data"]] == [0, 1]
    assert all(len(d["embedding"]) == 384 for d in body["data"])
    for bad, status in (({"input": []}, 422), ({"input": [""]}, 422),
                        ({"input": ["x"] * 65}, 422), ({"input": "x", "model": "gpt"}, 404),
                        ({"text": "x"}, 422)):
        assert httpx.post(embedding_server.url, json=bad, timeout=30).status_code == status, bad


def test_embed_is_callable_from_psql_as_superuser(corpus: dict[str, Any]) -> None:
    row = corpus["admin"].execute("select vector_dims(app.embed('hello')), "
                                  "app.embed('   ') is null").fetchone()
    assert row == (384, True)
