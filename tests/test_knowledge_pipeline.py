"""Knowledge pipeline: review-complete -> extraction job -> drafts; publish -> embedding
and auto-links (all through the job runner the worker calls); ingest; job dedupe, retry
with backoff and SKIP LOCKED claiming; bad input refused with nothing written; roles and
tenant boundaries; lint, analytics and the Obsidian export."""

from __future__ import annotations

import io
import json
import re
import zipfile
from typing import Any

import psycopg
import pytest
import yaml
from psycopg.types.json import Jsonb
from sm_support import Reply, World, make_story, make_world, run_to_reported
from sm_support import call as sm_call

from loopctl.knowledge.embeddings import LocalEmbedder
from loopctl.knowledge.export import build_vault
from loopctl.knowledge.extractor import DeterministicExtractor, classify, extract_tags
from loopctl.knowledge.jobs import JobContext, run_pending_jobs, run_until_idle
from loopctl.testing import Key, as_key, create_tenant

FINDINGS = [
    {"title": "Deadlock when bulk verify and reject lock stories in different orders",
     "description": "`app.bulk_verify` locked rows in request order while reject locked them "
                    "by id; two concurrent calls deadlocked. Lock rows sorted by primary key.",
     "file": "functions/state_machine.sql"},
    "Always lock rows in a consistent order (sorted by primary key) in every bulk function "
    "so that concurrent transactions cannot deadlock.",
    "We decided to page the change feed by a monotonic sequence instead of OFFSET because "
    "concurrent inserts made OFFSET skip entries.",
    "ok",  # trivia: no article
]


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    e = LocalEmbedder()
    e.embed(["load the model once per test session"])
    return e


def call(db: psycopg.Connection[Any], key: Key, fn: str, commit: bool = True,
         **args: Any) -> Reply:
    """sm_support.call with typed arrays for the knowledge functions' text[] / uuid[]."""
    if "p_tags" in args or "p_ids" in args:
        names = ", ".join(f"{n} => %({n})s" + {"p_tags": "::text[]", "p_ids": "::uuid[]"}.get(n, "")
                          for n in args)
        params = {k: (Jsonb(v) if isinstance(v, dict) else v) for k, v in args.items()}
        try:
            with as_key(db, key, commit=commit) as c:
                row = c.execute(f"select api.{fn}({names})", params).fetchone()
        except psycopg.Error as exc:
            if exc.diag.sqlstate != "PGRST":
                raise
            return Reply(json.loads(exc.diag.message_detail or "{}")["status"],
                         json.loads(exc.diag.message_primary or "{}"))
        assert row is not None
        return Reply(200, row[0])
    return sm_call(db, key, fn, commit, **args)


def counts(db: psycopg.Connection[Any]) -> tuple[int, ...]:
    row = db.execute("select (select count(*) from app.articles), "
                     "(select count(*) from app.knowledge_jobs), "
                     "(select count(*) from app.article_reads), "
                     "(select count(*) from app.article_links)").fetchone()
    assert row is not None
    return tuple(row)


def reviewed_story(db: psycopg.Connection[Any], w: World, findings: list[Any],
                   number: str = "1.1") -> str:
    story = make_story(db, w, number, title=f"Story {number}")
    run_to_reported(db, w, story)
    reply = call(db, w.orchestrator, "review_complete", story_id=story,
                 review_type="code_review", findings_count=len(findings),
                 summary="Concurrency review of the bulk paths", findings=findings)
    assert reply.status in (200, 201), reply
    return story


def create(db: psycopg.Connection[Any], key: Key, title: str, body: str,
           category: str = "pattern", tags: list[str] | None = None) -> str:
    reply = call(db, key, "knowledge_create", p_title=title, p_body=body, p_category=category,
                 p_tags=tags or [])
    assert reply.status == 200, reply
    return reply.body["article"]["id"]


def publish(db: psycopg.Connection[Any], key: Key, article_id: str) -> None:
    reply = call(db, key, "knowledge_publish", p_id=article_id)
    assert reply.status == 200, reply


def test_review_complete_produces_drafts_and_publishing_embeds_and_links(
        db: psycopg.Connection[Any], embedder: LocalEmbedder) -> None:
    w = make_world(db)
    story = reviewed_story(db, w, FINDINGS)
    # The review's transaction only queued a job: extraction runs in the worker.
    jobs = db.execute("select kind, status, payload->>'story_id' from app.knowledge_jobs "
                      "where tenant_id = %s", (w.tenant_id,)).fetchall()
    assert jobs == [("extract", "pending", story)]
    assert db.execute("select count(*) from app.articles").fetchone() == (0,)

    ctx = JobContext(embedder=embedder)
    assert run_until_idle(db, ctx) == 1
    drafts = call(db, w.user, "knowledge_drafts", p_project_id=w.project_id).body["data"]
    by_title = {d["title"]: d for d in drafts}
    assert len(drafts) == 3, [d["title"] for d in drafts]
    deadlock = by_title["Deadlock when bulk verify and reject lock stories in different orders"]
    assert deadlock["category"] == "finding" and deadlock["source"] == "review"
    assert "app.bulk_verify" in deadlock["tags"]
    assert "functions/state_machine.sql" in deadlock["tags"]
    convention = next(d for d in drafts if d["title"].startswith("Always lock rows"))
    assert convention["category"] == "convention"
    decision = next(d for d in drafts if d["title"].startswith("We decided"))
    assert decision["category"] == "decision" and "pagination" not in decision["tags"]
    assert all(d["status"] == "draft" and not d["embedded"] for d in drafts)
    source = db.execute("select source_ref from app.articles where id = %s",
                        (deadlock["id"],)).fetchone()
    review_id = db.execute("select id::text from app.reviews where story_id = %s",
                           (story,)).fetchone()
    assert source == review_id

    # Publishing queues embedding; vectors are filled by the worker, then similar articles
    # are linked automatically.
    publish(db, w.orchestrator, deadlock["id"])
    publish(db, w.user, convention["id"])
    assert db.execute("select count(*) from app.articles where embedding is not null"
                      ).fetchone() == (0,)
    assert run_until_idle(db, ctx) == 2
    rows = db.execute("select id::text, embedding_model, vector_dims(embedding) from app.articles "
                      "where status = 'published' order by id").fetchall()
    assert [(r[1], r[2]) for r in rows] == [("all-MiniLM-L6-v2", 384)] * 2
    links = call(db, w.user, "knowledge_links", p_id=deadlock["id"]).body["links"]
    assert [(ln["article_id"], ln["link_type"], ln["origin"]) for ln in links] == [
        (convention["id"], "relates_to", "auto")]
    assert links[0]["score"] >= 0.6
    # The unpublished draft is neither embedded nor linked.
    assert db.execute("select embedding is null from app.articles where id = %s",
                      (decision["id"],)).fetchone() == (True,)


def test_extraction_is_deduplicated(db: psycopg.Connection[Any]) -> None:
    w = make_world(db)
    story = reviewed_story(db, w, FINDINGS)
    review_id = db.execute("select id from app.reviews where story_id = %s", (story,)).fetchone()
    # Queuing the same review again is a no-op (same content hash).
    row = db.execute("select created from app.knowledge_enqueue(%s, 'extract', "
                     "jsonb_build_object('review_id', %s::text), "
                     "app.knowledge_sha('review|' || %s))",
                     (w.tenant_id, review_id[0], review_id[0])).fetchone()
    assert row == (False,)
    run_until_idle(db, JobContext(embedder=None))
    # A second review repeating the same findings creates no duplicate articles.
    call(db, w.implementer, "unclaim_story", story_id=story)
    story2 = reviewed_story(db, w, FINDINGS, number="1.2")
    assert story2
    run_until_idle(db, JobContext(embedder=None))
    results = db.execute("select result from app.knowledge_jobs where kind = 'extract' "
                         "order by created_at").fetchall()
    assert len(results[0][0]["created"]) == 3
    assert results[1][0]["created"] == [] and results[1][0]["duplicates"] == 3
    assert db.execute("select count(*) from app.articles").fetchone() == (3,)


class Exploding(DeterministicExtractor):
    def extract(self, source: dict[str, Any]) -> list[Any]:
        raise RuntimeError("model endpoint down")


def test_failed_jobs_retry_with_backoff_then_die(db: psycopg.Connection[Any]) -> None:
    t = create_tenant(db)
    reply = call(db, t.user_key, "knowledge_ingest",
                 p_items=["Use a connection pool for every database access in the service."])
    assert reply.status == 200, reply
    ctx = JobContext(embedder=None, extractor=Exploding())
    assert run_pending_jobs(db, ctx) == 1
    job = db.execute("select status, attempts, run_after - now(), last_error "
                     "from app.knowledge_jobs").fetchone()
    assert job is not None
    assert job[0] == "failed" and job[1] == 1 and "model endpoint down" in job[3]
    assert 20 <= job[2].total_seconds() <= 40  # first backoff ~30 s (±20 % jitter)
    assert run_pending_jobs(db, ctx) == 0  # not runnable before its backoff
    delays = []
    for _ in range(4):
        db.execute("update app.knowledge_jobs set run_after = now()")
        assert run_pending_jobs(db, ctx) == 1
        delays.append(db.execute("select extract(epoch from run_after - now()) "
                                 "from app.knowledge_jobs").fetchone()[0])
    assert delays[0] > 80 and delays[1] > 4 * 80  # grows exponentially
    assert db.execute("select status, attempts from app.knowledge_jobs").fetchone() == ("dead", 5)
    visible = call(db, t.user_key, "knowledge_ingestion_jobs").body["data"]
    assert visible[0]["status"] == "dead" and visible[0]["attempts"] == 5
    pipeline = call(db, t.user_key, "knowledge_pipeline").body
    assert pipeline["jobs"] == {"ingest": {"dead": 1}}


def test_jobs_are_claimed_once_with_skip_locked(db: psycopg.Connection[Any],
                                                fresh_db: str) -> None:
    t = create_tenant(db)
    items = [f"Note number {i}: keep migrations reversible and verified in every change."
             for i in range(6)]
    assert call(db, t.user_key, "knowledge_ingest", p_items=items).status == 200
    with psycopg.connect(fresh_db) as a, psycopg.connect(fresh_db) as b:
        got_a = {r[0] for r in a.execute(
            "select id from app.knowledge_claim_jobs('worker-a', 4, 60)").fetchall()}
        got_b = {r[0] for r in b.execute(
            "select id from app.knowledge_claim_jobs('worker-b', 4, 60)").fetchall()}
        assert len(got_a) == 4 and len(got_b) == 2 and not got_a & got_b
        a.rollback()
        b.rollback()
    # An expired lease makes a running job claimable again.
    db.execute("select app.knowledge_claim_jobs('crashed', 6, 60)")
    claim = "select count(*) from app.knowledge_claim_jobs('w', 6, 60)"
    assert db.execute(claim).fetchone() == (0,)
    db.execute("update app.knowledge_jobs set lease_until = now() - interval '1 second'")
    assert db.execute(claim).fetchone() == (6,)


def test_ingest_goes_through_the_pipeline(db: psycopg.Connection[Any]) -> None:
    t = create_tenant(db)
    text = ("## Prefer keyset pagination\nOFFSET pages skip rows under concurrent inserts; "
            "page by a sequence cursor instead.\n\n"
            "## Reference: pgvector iterative scans\nSee the pgvector documentation on "
            "`hnsw.iterative_scan` for filtered nearest-neighbour queries.")
    reply = call(db, t.user_key, "knowledge_ingest",
                 p_items=[text, {"text": "Retry webhooks with backoff and jitter on 5xx answers.",
                                 "title": "Webhook retries", "category": "pattern",
                                 "tags": ["webhooks"]}])
    assert reply.status == 200 and [j["duplicate"] for j in reply.body["jobs"]] == [False, False]
    again = call(db, t.user_key, "knowledge_ingest", p_items=[text])
    assert again.body["jobs"][0]["duplicate"] is True
    assert run_until_idle(db, JobContext(embedder=None)) == 2
    drafts = {d["title"]: d for d in call(db, t.user_key, "knowledge_drafts").body["data"]}
    assert set(drafts) == {"Prefer keyset pagination", "Reference: pgvector iterative scans",
                           "Webhook retries"}
    assert drafts["Reference: pgvector iterative scans"]["category"] == "reference"
    assert "hnsw.iterative_scan" in drafts["Reference: pgvector iterative scans"]["tags"]
    assert "webhooks" in drafts["Webhook retries"]["tags"]
    assert all(d["source"] == "ingest" for d in drafts.values())


def test_bad_input_is_refused_and_nothing_is_written(db: psycopg.Connection[Any]) -> None:
    t = create_tenant(db)
    other = create_tenant(db)
    theirs = create(db, other.user_key, "Their article", "Secret body of another tenant.")
    mine = create(db, t.user_key, "My article", "Body.")
    before = counts(db)
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("knowledge_create", {"p_title": " ", "p_body": "b", "p_category": "pattern"},
         422, "invalid_title"),
        ("knowledge_create", {"p_title": "T", "p_body": "x" * 100001, "p_category": "pattern"},
         413, "body_too_large"),
        ("knowledge_create", {"p_title": "T", "p_body": "b", "p_category": "gossip"},
         422, "unknown_category"),
        ("knowledge_create", {"p_title": "T", "p_body": "b", "p_category": "pattern",
                              "p_tags": ["Not A Tag!"]}, 422, "invalid_tag"),
        ("knowledge_create", {"p_title": "My article", "p_body": "b", "p_category": "pattern"},
         409, "title_taken"),
        ("knowledge_search", {"p_query": "  "}, 422, "empty_query"),
        ("knowledge_search", {"p_query": "x", "p_mode": "fuzzy"}, 422, "unknown_search_mode"),
        ("knowledge_search", {"p_query": "x", "p_category": "gossip"}, 422, "unknown_category"),
        ("knowledge_search", {"p_query": "x", "p_limit": 0}, 422, "invalid_limit"),
        ("knowledge_get", {"p_id": theirs}, 404, "article_not_found"),
        ("knowledge_update", {"p_id": theirs, "p_body": "overwritten"}, 404, "article_not_found"),
        ("knowledge_publish", {"p_id": theirs}, 404, "article_not_found"),
        ("knowledge_archive", {"p_id": theirs}, 404, "article_not_found"),
        ("knowledge_delete", {"p_id": theirs}, 404, "article_not_found"),
        ("knowledge_link", {"p_from_id": mine, "p_to_id": theirs}, 404, "article_not_found"),
        ("knowledge_supersede", {"p_old_id": theirs, "p_new_id": mine}, 404, "article_not_found"),
        ("knowledge_update", {"p_id": mine, "p_category": "gossip"}, 422, "unknown_category"),
        ("knowledge_ingest", {"p_items": [{"text": "fine"}, {"text": ""}]}, 422, "invalid_item"),
        ("knowledge_ingest", {"p_items": ["t"] * 51}, 422, "invalid_batch"),
        ("knowledge_ingest", {"p_items": [{"text": "x" * 100001}]}, 413, "body_too_large"),
        ("knowledge_bulk_publish", {"p_ids": []}, 422, "invalid_batch"),
    ]
    for fn, args, status, code in cases:
        reply = call(db, t.user_key, fn, **args)
        assert (reply.status, reply.code) == (status, code), (fn, args.keys(), reply)
    assert counts(db) == before
    assert db.execute("select body from app.articles where id = %s", (theirs,)).fetchone() == (
        "Secret body of another tenant.",)
    # Bulk publish reports another tenant's id per item and publishes only what is ours.
    reply = call(db, t.user_key, "knowledge_bulk_publish", p_ids=[mine, theirs])
    assert reply.body["published"] == 1
    assert [r["ok"] for r in reply.body["results"]] == [True, False]
    assert db.execute("select status from app.articles where id = %s", (theirs,)).fetchone() == (
        "draft",)


def test_roles(db: psycopg.Connection[Any]) -> None:
    w = make_world(db)
    art = create(db, w.implementer, "Agent note", "Agents may write drafts.")
    assert call(db, w.implementer, "knowledge_publish", p_id=art).status == 403
    publish(db, w.orchestrator, art)
    assert call(db, w.implementer, "knowledge_update", p_id=art, p_body="x").status == 403
    assert call(db, w.orchestrator, "knowledge_delete", p_id=art).status == 403
    assert call(db, w.user, "knowledge_delete", p_id=art).status == 200
    assert db.execute("select count(*) from app.articles").fetchone() == (0,)


def test_direct_sql_as_an_api_role_cannot_reach_tables(db: psycopg.Connection[Any]) -> None:
    t = create_tenant(db)
    create(db, t.user_key, "Visible only via the API", "Body.")
    for stmt in ("select * from app.articles", "select app.knowledge_claim_jobs('x', 1, 1)",
                 "select app.embed('x')"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), \
                db.transaction(force_rollback=True):
            db.execute("set local role loopctl_user")
            db.execute(stmt)


def test_export_zip_opens_as_an_obsidian_vault(db: psycopg.Connection[Any]) -> None:
    t = create_tenant(db)
    a = create(db, t.user_key, "Lock rows in a consistent order", "Sort by primary key.",
               "convention", ["postgres", "locking"])
    b = create(db, t.user_key, "Deadlock in bulk verify", "Found in review: see [[x]].",
               "finding")
    c = create(db, t.user_key, "Title with | pipe: and [brackets]", "Edge case.", "reference")
    d = create(db, t.user_key, "A draft stays out", "Unpublished.", "decision")
    for x in (a, b, c):
        publish(db, t.user_key, x)
    assert call(db, t.user_key, "knowledge_link", p_from_id=b, p_to_id=a,
                p_link_type="derived_from").status == 200
    call(db, t.user_key, "knowledge_link", p_from_id=c, p_to_id=a)
    call(db, t.user_key, "knowledge_link", p_from_id=d, p_to_id=a)
    export = call(db, t.user_key, "knowledge_export").body
    vault = zipfile.ZipFile(io.BytesIO(build_vault(export["articles"])))
    names = vault.namelist()
    assert "_index.md" in names
    notes = [n for n in names if n != "_index.md"]
    assert len(notes) == 3 and all(re.fullmatch(r"[a-z]+/[a-z0-9-]+\.md", n) for n in notes)
    stems = {n.rsplit("/", 1)[1][:-3] for n in notes}
    titles = set()
    for name in notes:
        text = vault.read(name).decode()
        m = re.match(r"^---\n(.*?)\n---\n", text, re.S)
        assert m, name
        front = yaml.safe_load(m.group(1))
        assert name.startswith(front["category"] + "/") and front["status"] == "published"
        titles.add(front["title"])
        assert "## Related Articles" in text
        related = text.split("## Related Articles", 1)[1]
        for target in re.findall(r"\[\[([^\]|#]+)(?:\|[^\]]*)?\]\]", related):
            assert target in stems, (name, target)
    assert titles == {"Lock rows in a consistent order", "Deadlock in bulk verify",
                      "Title with | pipe: and [brackets]"}
    lock_note = vault.read(next(n for n in notes if "lock-rows" in n)).decode()
    assert lock_note.count("[[") == 2 + lock_note.split("## Related")[0].count("[[")
    index = vault.read("_index.md").decode()
    linked = re.findall(r"\[\[([^\]|]+)\|", index)
    assert sorted(linked) == sorted(stems)


def test_lint_reports_health_problems(db: psycopg.Connection[Any]) -> None:
    w = make_world(db)
    reviewed_story(db, w, FINDINGS)
    run_until_idle(db, JobContext(embedder=None))
    ids = [r[0] for r in db.execute("select id::text from app.articles order by title")]
    x = create(db, w.user, "Use advisory locks", "Advisory locks serialize the jobs.")
    y = create(db, w.user, "Never use advisory locks", "Advisory locks hide deadlocks.")
    z = create(db, w.user, "Lonely article", "Nobody links here.")
    for i in [*ids, x, y, z]:
        publish(db, w.user, i)
    call(db, w.user, "knowledge_link", p_from_id=x, p_to_id=y, p_link_type="contradicts")
    call(db, w.user, "knowledge_link", p_from_id=ids[0], p_to_id=ids[1])
    db.execute("update app.articles set updated_at = now() - interval '400 days' where id = %s",
               (z,))
    db.execute("delete from app.reviews")  # the review the drafts came from is gone
    lint = call(db, w.user, "knowledge_lint", p_stale_days=180, p_cap=2).body
    assert [i["title"] for i in lint["stale"]["items"]] == ["Lonely article"]
    assert lint["orphaned"]["count"] == 2 and len(lint["orphaned"]["items"]) == 2  # z, ids[2]
    assert lint["contradiction_clusters"]["count"] == 1
    assert {a["id"] for a in lint["contradiction_clusters"]["items"][0]["articles"]} == {x, y}
    assert lint["broken_sources"]["count"] == 3 and len(lint["broken_sources"]["items"]) == 2
    assert lint["unembedded"]["count"] == 6
    assert lint["coverage_gaps"]["empty_categories"] == ["reference"]
    assert call(db, w.implementer, "knowledge_lint").status == 403


def test_reads_are_logged_for_analytics(db: psycopg.Connection[Any]) -> None:
    w = make_world(db)
    a = create(db, w.user, "Popular article", "Everyone reads about connection pools.")
    b = create(db, w.user, "Unread article", "Nobody reads about tabs versus spaces.")
    publish(db, w.user, a)
    publish(db, w.user, b)
    for key in (w.implementer, w.implementer, w.reporter):
        assert call(db, key, "knowledge_get", p_id=a).status == 200
    reply = call(db, w.implementer, "knowledge_search", p_query="connection pools",
                 p_mode="keyword")
    assert [r["id"] for r in reply.body["data"]] == [a]
    top = call(db, w.user, "knowledge_analytics_top").body["data"]
    assert top[0]["id"] == a and top[0]["reads"] == 4 and top[0]["readers"] == 2
    unused = call(db, w.user, "knowledge_unused_articles").body["data"]
    assert [u["id"] for u in unused] == [b]
    agents = {r["agent"]: r for r in call(db, w.user, "knowledge_agent_usage").body["data"]}
    assert agents["implementer"]["reads"] == 3 and agents["implementer"]["searches"] == 1
    stats = call(db, w.user, "knowledge_article_stats", p_id=a).body
    assert stats["reads"] == 4 and stats["by_via"] == {"get": 3, "search": 1}


def test_semantic_search_falls_back_to_keyword_without_an_embedding(
        db: psycopg.Connection[Any]) -> None:
    t = create_tenant(db)
    a = create(db, t.user_key, "Connection pooling", "Reuse connections through a pool.")
    publish(db, t.user_key, a)
    # No embeddings endpoint configured for this database: no query vector.
    for mode in ("semantic", "combined"):
        reply = call(db, t.user_key, "knowledge_search", p_query="pool", p_mode=mode)
        assert reply.status == 200
        assert reply.body["fallback"] == "keyword" and reply.body["mode"] == "keyword"
        assert [r["id"] for r in reply.body["data"]] == [a]
    # An unreachable endpoint is the same: a flag, not an error.
    dbname = db.execute("select current_database()").fetchone()[0]
    db.execute(f"alter database {dbname} set loopctl.embeddings_url = 'http://127.0.0.1:9/v1'")
    reply = call(db, t.user_key, "knowledge_search", p_query="pool", p_mode="semantic")
    assert reply.status == 200 and reply.body["fallback"] == "keyword"


class RenamedModel:
    """The bundled model under another name: stands in for a model change."""

    def __init__(self, inner: LocalEmbedder, name: str) -> None:
        self.inner, self.model_name = inner, name

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self.inner.embed(texts)


def test_changing_the_active_model_reembeds_in_the_background(
        db: psycopg.Connection[Any], embedder: LocalEmbedder) -> None:
    t = create_tenant(db)
    ids = [create(db, t.user_key, f"Article {i}", f"Body about topic {i}.") for i in range(3)]
    for i in ids:
        publish(db, t.user_key, i)
    run_until_idle(db, JobContext(embedder=embedder))
    assert db.execute("select array_agg(distinct embedding_model) from app.articles"
                      ).fetchone() == (["all-MiniLM-L6-v2"],)
    dbname = db.execute("select current_database()").fetchone()[0]
    db.execute(f"alter database {dbname} set loopctl.embedding_model = 'minilm-v2-renamed'")
    # A worker still running the old model refuses to write mismatched vectors.
    run_pending_jobs(db, JobContext(embedder=embedder))
    assert db.execute("select count(*) from app.knowledge_jobs where status = 'failed' "
                      "and last_error like '%%active model%%'").fetchone() == (3,)
    db.execute("update app.knowledge_jobs set run_after = now()")
    run_until_idle(db, JobContext(embedder=RenamedModel(embedder, "minilm-v2-renamed")))
    assert db.execute("select array_agg(distinct embedding_model) from app.articles"
                      ).fetchone() == (["minilm-v2-renamed"],)
    pipeline = call(db, t.user_key, "knowledge_pipeline").body["embedding"]
    assert pipeline == {"active_model": "minilm-v2-renamed", "published_embedded": 3,
                        "published_pending": 0}


def test_deterministic_extractor_rules() -> None:
    assert classify("We chose Postgres instead of Redis for the queue") == "decision"
    assert classify("Always name migrations after the table they change") == "convention"
    assert classify("The cache leaks memory and crashes the worker") == "finding"
    assert classify("See https://example.org/docs for the reference") == "reference"
    assert classify("Use a reusable retry helper: a small pattern around httpx") == "pattern"
    tags = extract_tags("`run_pending_jobs` in service/jobs.py races on the queue; "
                        "security matters")
    assert tags[:2] == ["run_pending_jobs", "service/jobs.py"] and "security" in tags
    drafts = DeterministicExtractor().extract({
        "kind": "review", "findings": [], "review_id": "r", "review_type": "code",
        "summary": "- Missing index on stories by epic makes the board slow\n"
                   "- Missing index on stories by epic makes the board slow\n- nit"})
    assert [d.title for d in drafts] == ["Missing index on stories by epic makes the board slow"]


def test_worker_registry_runs_the_knowledge_jobs(db: psycopg.Connection[Any],
                                                 fresh_db: str) -> None:
    import asyncio

    from loopctl.config import Settings
    from loopctl.knowledge import worker_jobs
    from loopctl.worker.jobs import JobContext as WorkerContext
    from loopctl.worker.jobs import load_jobs

    assert "knowledge.jobs" in {j.name for j in load_jobs()}
    w = make_world(db)
    reviewed_story(db, w, FINDINGS)
    ctx = WorkerContext(pool=None, database_url=fresh_db,  # type: ignore[arg-type]
                        settings=Settings(), worker_name="test")
    asyncio.run(worker_jobs.knowledge_jobs(ctx))
    assert db.execute("select status from app.knowledge_jobs").fetchall() == [("done",)]
    assert db.execute("select count(*) from app.articles where source = 'review'"
                      ).fetchone() == (3,)


def test_context_for_a_story_mixes_relevance_recency_and_links(
        db: psycopg.Connection[Any]) -> None:
    w = make_world(db)
    story = make_story(db, w, "2.1", title="Add keyset pagination to the change feed")
    relevant = create(db, w.user, "Keyset pagination for feeds",
                      "Page the change feed by a sequence cursor, never OFFSET.", "decision")
    old = create(db, w.user, "Pagination with OFFSET in old admin pages",
                 "The change feed used OFFSET pagination once.", "finding")
    linked = create(db, w.user, "Monotonic sequences", "Sequences never go backwards.",
                    "reference")
    unrelated = create(db, w.user, "Label every form control", "Accessibility rule.",
                       "convention")
    for a in (relevant, old, linked, unrelated):
        publish(db, w.user, a)
    call(db, w.user, "knowledge_link", p_from_id=relevant, p_to_id=linked)
    db.execute("update app.articles set published_at = now() - interval '2 years' "
               "where id = %s", (old,))
    reply = call(db, w.implementer, "knowledge_context", p_story_id=story, p_limit=2)
    assert reply.status == 200, reply
    assert [a["id"] for a in reply.body["data"]] == [relevant, old]
    assert [a["id"] for a in reply.body["linked"]] == [linked]
    assert reply.body["fallback"] == "keyword"  # no embeddings endpoint for this database
    other = create_tenant(db)
    reply = call(db, other.user_key, "knowledge_context", p_story_id=story)
    assert (reply.status, reply.code) == (404, "story_not_found")
    reads = db.execute("select count(*) from app.article_reads where via = 'context'").fetchone()
    assert reads == (2,)
