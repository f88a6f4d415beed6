"""Issue #3 / SPEC §6: the audit trail — what the triggers record, append-only refusals for
every role but a superuser, the per-tenant hash chain and its verification, audit queries
and per-story history."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest
from audit_support import (
    acting_as,
    api_error,
    call,
    entries,
    last_entry_id,
    make_story,
)

from loopctl.testing import as_api_role, as_key, create_agent_key, create_tenant

Conn = psycopg.Connection[Any]


# -- what the triggers record ----------------------------------------------------------------
def test_insert_update_delete_each_write_one_entry_with_actor_and_states(db: Conn) -> None:
    t = create_tenant(db)
    mark = last_entry_id(db)
    with as_key(db, t.user_key, commit=True, headers={"x-request-id": "req-123"}) as c:
        new_key = call(c, "select api.create_api_key('ci', 'agent')")
    [ins] = entries(db, t.id, mark)
    assert ins["action"] == "insert" and ins["entity_type"] == "api_key"
    assert ins["entity_id"] == new_key["id"] and ins["old_state"] is None
    assert ins["new_state"]["name"] == "ci" and ins["new_state"]["role"] == "agent"
    assert "key_hash" not in ins["new_state"]  # secrets never reach the trail
    assert (ins["actor_key_id"], ins["actor_role"]) == (t.user_key.id, "user")
    assert ins["request_id"] == "req-123"

    mark = last_entry_id(db)
    with as_key(db, t.user_key, commit=True) as c:
        c.execute("select api.revoke_api_key(%s)", (new_key["id"],))
    [upd] = entries(db, t.id, mark)
    assert upd["action"] == "update" and upd["entity_id"] == new_key["id"]
    assert upd["old_state"]["revoked_at"] is None and upd["new_state"]["revoked_at"] is not None
    assert "key_hash" not in upd["old_state"] and "key_hash" not in upd["new_state"]

    story = make_story(db, t.id)
    mark = last_entry_id(db)
    with acting_as(db, t.user_key) as c:
        c.execute("delete from app.stories where id = %s", (story.id,))
    [dele] = entries(db, t.id, mark)
    assert dele["action"] == "delete" and dele["entity_type"] == "story"
    assert dele["entity_id"] == story.id and dele["project_id"] == story.project_id
    assert dele["new_state"] is None and dele["old_state"]["id"] == story.id
    assert dele["actor_key_id"] == t.user_key.id


def test_agent_actor_carries_agent_and_lineage(db: Conn) -> None:
    t = create_tenant(db)
    agent = create_agent_key(db, t.id, "agent", "impl-1")
    story = make_story(db, t.id)
    mark = last_entry_id(db)
    with acting_as(db, agent, action="story.claim") as c:
        c.execute("update app.stories set agent_status = 'assigned', assigned_agent_id = %s "
                  "where id = %s", (agent.agent_id, story.id))
    [e] = entries(db, t.id, mark)
    assert e["action"] == "story.claim"  # the domain action set by the state machine
    assert (e["actor_agent_id"], e["actor_role"]) == (agent.agent_id, "agent")
    assert e["actor_lineage"] == [agent.agent_id]
    assert e["old_state"]["agent_status"] == "pending"
    assert e["new_state"]["agent_status"] == "assigned"


def test_signup_without_identity_is_recorded_as_system(db: Conn) -> None:
    t = create_tenant(db)
    first = entries(db, t.id)
    assert [(e["entity_type"], e["action"], e["actor_role"]) for e in first] == [
        ("tenant", "insert", "system"), ("api_key", "insert", "system")]
    assert first[0]["entity_id"] == t.id and first[0]["tenant_id"] == t.id


def test_updates_that_change_nothing_are_not_recorded(db: Conn) -> None:
    t = create_tenant(db)
    story = make_story(db, t.id)
    mark = last_entry_id(db)
    db.execute("update app.stories set title = title where id = %s", (story.id,))
    db.execute("update app.stories set updated_at = now() + interval '1 s' where id = %s",
               (story.id,))
    db.execute("update app.api_keys set last_used_at = now() where id = %s", (t.user_key.id,))
    assert entries(db, t.id, mark) == []
    db.execute("update app.stories set title = 'Renamed' where id = %s", (story.id,))
    assert [e["action"] for e in entries(db, t.id, mark)] == ["update"]


def test_event_outbox_is_not_audited(db: Conn) -> None:
    t = create_tenant(db)
    key = create_agent_key(db, t.id, "agent")
    mark = last_entry_id(db)
    with as_key(db, key, commit=True) as c:
        c.execute("select api.register_agent('worker-1')")
    assert db.execute("select count(*) from app.events where tenant_id = %s",
                      (t.id,)).fetchone() == (1,)
    types = sorted(e["entity_type"] for e in entries(db, t.id, mark))
    assert types == ["agent", "api_key"]  # the agent row and the key bound to it; no event


def test_every_tenant_table_is_audited_unless_marked_no_audit(db: Conn) -> None:
    rows = db.execute("""
        select c.relname,
               coalesce(obj_description(c.oid, 'pg_class'), '') like '%[no-audit]%',
               exists (select 1 from pg_trigger g where g.tgrelid = c.oid
                         and g.tgname = 'audit_record_change')
          from pg_class c join pg_namespace n on n.oid = c.relnamespace
         where n.nspname = 'app' and c.relkind in ('r', 'p') and not c.relispartition
           and (c.relname = 'tenants' or exists (
                  select 1 from pg_attribute a where a.attrelid = c.oid
                     and a.attname = 'tenant_id' and not a.attisdropped))""").fetchall()
    assert {"tenants", "stories", "api_keys", "events"} <= {r[0] for r in rows}
    wrong = [name for name, no_audit, audited in rows if audited == no_audit]
    assert wrong == []
    assert ("events", True, False) in rows
    # knowledge articles: the embedding and the search vector are derived, never copied
    args = db.execute("select encode(tgargs, 'escape') from pg_trigger "
                      "where tgrelid = 'app.articles'::regclass "
                      "and tgname = 'audit_record_change'").fetchone()
    assert args is not None and "embedding" in args[0]


def test_a_table_added_later_is_covered_when_functions_are_reapplied(db: Conn) -> None:
    db.execute("create table app.widgets (tenant_id uuid not null, id uuid not null "
               "default gen_random_uuid(), project_id uuid, name text, "
               "embedding public.vector(3), body_tsv tsvector, scratch text, "
               "primary key (tenant_id, id))")
    db.execute("comment on column app.widgets.scratch is 'cache [no-audit]'")
    db.execute("create table app.noisy (tenant_id uuid not null, n int)")
    db.execute("comment on table app.noisy is 'scratch [no-audit]'")
    from loopctl.config import REPO_ROOT

    audit_sql = (REPO_ROOT / "functions" / "audit.sql").read_text()
    db.execute(audit_sql)  # what re-applying the functions change does
    t = create_tenant(db)
    mark = last_entry_id(db)
    db.execute("insert into app.widgets (tenant_id, name, embedding, body_tsv, scratch) "
               "values (%s, 'w', '[1,2,3]', 'a b', 'x')", (t.id,))
    db.execute("insert into app.noisy (tenant_id, n) values (%s, 1)", (t.id,))
    [widget] = entries(db, t.id, mark)
    assert widget["entity_type"] == "widget"
    # derived columns (vector, tsvector) and '[no-audit]' columns stay out of the trail
    assert set(widget["new_state"]) == {"tenant_id", "id", "project_id", "name"}
    db.execute("update app.widgets set embedding = '[3,2,1]', scratch = 'y'")
    assert len(entries(db, t.id, mark)) == 1  # a change of only those is not a change


def test_entity_types_and_project_ids(db: Conn) -> None:
    t = create_tenant(db)
    mark = last_entry_id(db)
    story = make_story(db, t.id)
    db.execute("insert into app.acceptance_criteria (tenant_id, story_id, ac_id, position, "
               "description) values (%s, %s, 'AC-1', 1, 'works')", (t.id, story.id))
    got = [(e["entity_type"], e["entity_id"], e["project_id"]) for e in entries(db, t.id, mark)]
    assert got == [("project", story.project_id, story.project_id),
                   ("epic", story.epic_id, story.project_id),
                   ("story", story.id, story.project_id),
                   ("acceptance_criterion", None, None)]


def test_a_rolled_back_change_leaves_no_entry(db: Conn) -> None:
    t = create_tenant(db)
    mark = last_entry_id(db)
    with as_key(db, t.user_key) as c:  # rolled back
        c.execute("select api.create_api_key('ghost', 'agent')")
    assert entries(db, t.id, mark) == []
    assert db.execute("select count(*) from audit.pending p join audit.entries e "
                      "on e.id = p.entry_id where e.id > %s", (mark,)).fetchone() == (0,)


# -- append-only ----------------------------------------------------------------------------
TAMPERING = [
    "update audit.entries set action = 'forged'",
    "delete from audit.entries",
    "truncate audit.entries cascade",
    "update audit.chain set entry_hash = '\\x00'",
    "delete from audit.chain",
    "truncate audit.chain",
]
ROLES = ["loopctl_anon", "loopctl_user", "loopctl_orchestrator", "loopctl_agent",
         "loopctl_owner", "loopctl_auth", "loopctl_audit"]


@pytest.mark.parametrize("role", ROLES)
def test_no_role_but_a_superuser_can_change_the_trail(db: Conn, role: str) -> None:
    t = create_tenant(db)
    call(db, "select audit.seal(%s)", (t.id,))
    before = db.execute("select count(*), max(id) from audit.entries").fetchone()
    for stmt in TAMPERING:
        with pytest.raises(psycopg.errors.InsufficientPrivilege), db.transaction():
            db.execute(f"set local role {role}")
            db.execute(stmt)
    assert db.execute("select count(*), max(id) from audit.entries").fetchone() == before
    assert call(db, "select audit.verify_chain(%s)", (t.id,))["ok"] is True


def test_even_the_audit_owner_granting_itself_update_is_refused(db: Conn) -> None:
    t = create_tenant(db)
    call(db, "select audit.seal(%s)", (t.id,))
    for stmt in ("update audit.entries set action = 'forged'", "delete from audit.chain"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"), \
                db.transaction():
            db.execute("set local role loopctl_audit")
            db.execute("grant update, delete on audit.entries, audit.chain to loopctl_audit")
            db.execute(stmt)


def test_api_roles_cannot_read_the_trail_directly(db: Conn) -> None:
    t = create_tenant(db)
    for table in ("audit.entries", "audit.chain", "audit.pending", "audit.chain_head"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_key(db, t.user_key) as c:
            c.execute(f"select * from {table}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege), as_key(db, t.user_key) as c:
            c.execute(f"insert into {table} (tenant_id) values (%s)", (t.id,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege), as_key(db, t.user_key) as c:
        c.execute("select audit.seal(%s)", (t.id,))


# -- the hash chain ---------------------------------------------------------------------------
def _tenant_with_history(db: Conn, changes: int = 6) -> tuple[Any, Any]:
    t = create_tenant(db)
    story = make_story(db, t.id)
    for i in range(changes):
        with acting_as(db, t.user_key) as c:
            c.execute("update app.stories set description = %s where id = %s",
                      (f"rev {i}", story.id))
    call(db, "select audit.seal(%s)", (t.id,))
    return t, story


def _chain(db: Conn, tenant_id: str) -> list[tuple[int, int]]:
    return db.execute("select seq, entry_id from audit.chain where tenant_id = %s order by seq",
                      (tenant_id,)).fetchall()


def test_chain_links_every_entry_in_order_and_verifies(db: Conn) -> None:
    t, _ = _tenant_with_history(db)
    chain = _chain(db, t.id)
    ids = [e["id"] for e in entries(db, t.id)]
    assert [s for s, _ in chain] == list(range(1, len(ids) + 1))
    assert [e for _, e in chain] == ids
    result = call(db, "select audit.verify_chain(%s)", (t.id,))
    assert result["ok"] is True and result["checked"] == len(ids) and result["unsealed"] == 0
    assert result["first_broken"] is None and result["head"]["seq"] == len(ids)
    # genesis and the recomputation in Python: sha256(prev || canonical json)
    import hashlib

    first = db.execute("select c.prev_hash, c.entry_hash, audit.canonical_entry(e, c.seq)::text "
                       "from audit.chain c join audit.entries e on e.id = c.entry_id "
                       "where c.tenant_id = %s and c.seq = 1", (t.id,)).fetchone()
    assert first is not None
    assert bytes(first[0]) == b"\x00" * 32
    assert bytes(first[1]) == hashlib.sha256(b"\x00" * 32 + first[2].encode()).digest()


def test_hash_does_not_depend_on_session_timezone(db: Conn) -> None:
    t, _ = _tenant_with_history(db, 2)
    db.execute("set timezone = 'Asia/Kolkata'")
    assert call(db, "select audit.verify_chain(%s)", (t.id,))["ok"] is True


def test_superuser_tamper_is_found_and_named(db: Conn) -> None:
    t, story = _tenant_with_history(db)
    seq, entry_id = _chain(db, t.id)[4]
    db.execute("update audit.entries set new_state = new_state || '{\"description\": \"x\"}' "
               "where id = %s", (entry_id,))
    result = call(db, "select audit.verify_chain(%s)", (t.id,))
    assert result["ok"] is False
    assert result["first_broken"] == {"seq": seq, "entry_id": entry_id,
                                      "reason": "entry_hash_mismatch"}
    # the API shows the same to the tenant's user and orchestrator
    orch = create_agent_key(db, t.id, "orchestrator", "orc")
    for key in (t.user_key, orch):
        with as_key(db, key) as c:
            got = call(c, "select api.verify_audit_chain()")["data"]
        assert got["ok"] is False and got["first_broken"]["entry_id"] == entry_id


def test_an_actor_rewrite_is_found(db: Conn) -> None:
    t, _ = _tenant_with_history(db)
    seq, entry_id = _chain(db, t.id)[2]
    db.execute("update audit.entries set actor_key_id = gen_random_uuid() where id = %s",
               (entry_id,))
    broken = call(db, "select audit.verify_chain(%s)", (t.id,))["first_broken"]
    assert (broken["seq"], broken["entry_id"]) == (seq, entry_id)


def test_deleted_chain_row_is_a_gap(db: Conn) -> None:
    t, _ = _tenant_with_history(db)
    seq, _entry = _chain(db, t.id)[3]
    db.execute("delete from audit.chain where tenant_id = %s and seq = %s", (t.id, seq))
    broken = call(db, "select audit.verify_chain(%s)", (t.id,))["first_broken"]
    assert broken == {"seq": seq, "entry_id": None, "reason": "gap"}


def test_rewritten_link_hash_breaks_the_next_link(db: Conn) -> None:
    t, _ = _tenant_with_history(db)
    seq, entry_id = _chain(db, t.id)[1]
    db.execute("update audit.chain set entry_hash = sha256('forged') "
               "where tenant_id = %s and seq = %s", (t.id, seq))
    broken = call(db, "select audit.verify_chain(%s)", (t.id,))["first_broken"]
    assert broken == {"seq": seq, "entry_id": entry_id, "reason": "entry_hash_mismatch"}


def test_a_removed_tail_disagrees_with_the_head(db: Conn) -> None:
    t, _ = _tenant_with_history(db)
    last_seq = _chain(db, t.id)[-1][0]
    db.execute("delete from audit.chain where tenant_id = %s and seq = %s", (t.id, last_seq))
    broken = call(db, "select audit.verify_chain(%s)", (t.id,))["first_broken"]
    assert broken["reason"] == "head_mismatch"


def test_a_missing_or_unchained_entry_is_found(db: Conn) -> None:
    t, _ = _tenant_with_history(db)
    seq, entry_id = _chain(db, t.id)[2]
    with db.transaction():  # only a superuser disabling FK checks can remove an entry
        db.execute("set local session_replication_role = replica")
        db.execute("delete from audit.entries where id = %s", (entry_id,))
    broken = call(db, "select audit.verify_chain(%s)", (t.id,))["first_broken"]
    assert broken == {"seq": seq, "entry_id": entry_id, "reason": "entry_missing"}

    t2 = create_tenant(db)
    call(db, "select audit.seal(%s)", (t2.id,))
    forged = call(db, "insert into audit.entries (tenant_id, action, entity_type) "
                      "values (%s, 'insert', 'story') returning id", (t2.id,))
    broken = call(db, "select audit.verify_chain(%s)", (t2.id,))["first_broken"]
    assert broken == {"seq": None, "entry_id": forged, "reason": "entry_not_chained"}


def test_tenants_have_independent_chains_and_seal_all_counts(db: Conn) -> None:
    a, b = create_tenant(db), create_tenant(db)
    make_story(db, a.id)
    result = call(db, "select audit.seal_all()")
    assert result == {"tenants": 2, "sealed": 7, "skipped": 0}
    assert call(db, "select audit.seal_all()")["sealed"] == 0
    assert _chain(db, b.id)[0][0] == 1 and len(_chain(db, b.id)) == 2
    assert len(_chain(db, a.id)) == 5
    for t in (a, b):
        assert call(db, "select audit.verify_chain(%s)", (t.id,))["ok"] is True


def test_sealing_skips_a_tenant_another_sealer_holds(db: Conn, fresh_db: str) -> None:
    t = create_tenant(db)
    with psycopg.connect(fresh_db) as other:  # a transaction holding the tenant's sealer
        other.execute("select pg_advisory_xact_lock(16725, audit.seal_lock_key(%s))", (t.id,))
        assert call(db, "select audit.seal(%s)", (t.id,)) == 0
        other.rollback()
    assert call(db, "select audit.seal(%s)", (t.id,)) == 2


def test_verify_requires_user_or_orchestrator(db: Conn) -> None:
    t = create_tenant(db)
    agent = create_agent_key(db, t.id, "agent", "impl")
    with pytest.raises(psycopg.Error) as err, as_key(db, agent) as c:
        c.execute("select api.verify_audit_chain()")
    assert api_error(err.value) == (403, "insufficient_role")
    with pytest.raises(psycopg.Error) as err, \
            as_api_role(db, "loopctl_user", {"role": "loopctl_user", "key_hash": "0" * 64}) as c:
        c.execute("select api.verify_audit_chain()")
    assert api_error(err.value) == (401, "unauthenticated")


# -- audit queries ------------------------------------------------------------------------------
def test_audit_entries_filters_pages_and_roles(db: Conn) -> None:
    t, story = _tenant_with_history(db, 3)
    orch = create_agent_key(db, t.id, "orchestrator", "orc")
    with acting_as(db, orch) as c:
        c.execute("update app.stories set title = 'By orc' where id = %s", (story.id,))
    with as_key(db, t.user_key) as c:
        by_story = call(c, "select api.audit_entries(entity_type => 'story', entity_id => %s)",
                        (story.id,))
        by_orc = call(c, "select api.audit_entries(actor => %s)", (orch.agent_id,))
        by_key = call(c, "select api.audit_entries(actor => %s)", (orch.id,))
        page = call(c, "select api.audit_entries(\"limit\" => 2, \"offset\" => 1)")
        future = call(c, "select api.audit_entries(since => now() + interval '1 day')")
    assert [e["action"] for e in by_story["data"]] == ["insert", "update", "update", "update",
                                                       "update"]
    assert all(e["sealed"] and e["seq"] for e in by_story["data"])
    assert len(by_orc["data"]) == 1 and by_orc["data"][0]["new_state"]["title"] == "By orc"
    assert by_orc["data"] == by_key["data"]
    assert len(page["data"]) == 2 and page["meta"] == {"limit": 2, "offset": 1, "has_more": True}
    assert future["data"] == []

    agent = create_agent_key(db, t.id, "agent", "impl")
    with pytest.raises(psycopg.Error) as err, as_key(db, agent) as c:
        c.execute("select api.audit_entries()")
    assert api_error(err.value) == (403, "insufficient_role")
    for bad in ("\"limit\" => 0", "\"limit\" => 1001", "\"offset\" => -1"):
        with pytest.raises(psycopg.Error) as err, as_key(db, t.user_key) as c:
            c.execute(f"select api.audit_entries({bad})")
        assert api_error(err.value)[0] == 422


def test_audit_entries_are_tenant_scoped(db: Conn) -> None:
    a, story = _tenant_with_history(db, 2)
    b = create_tenant(db)
    with as_key(db, b.user_key) as c:
        got = call(c, "select api.audit_entries(entity_type => 'story', entity_id => %s)",
                   (story.id,))
        everything = call(c, "select api.audit_entries(\"limit\" => 1000)")
    assert got["data"] == []
    assert {e["entity_id"] for e in everything["data"]} <= {b.id, b.user_key.id}


# -- story history ------------------------------------------------------------------------------
def test_story_history_replays_the_custody_chain(db: Conn) -> None:
    t = create_tenant(db)
    impl = create_agent_key(db, t.id, "agent", "impl")
    orch = create_agent_key(db, t.id, "orchestrator", "orc")
    story = make_story(db, t.id)
    steps = [
        (impl, "story.contract", "agent_status = 'contracted'"),
        (impl, "story.claim",
         f"agent_status = 'assigned', assigned_agent_id = '{impl.agent_id}'"),
        (impl, "story.start", "agent_status = 'implementing'"),
        (orch, "story.report", "agent_status = 'reported_done'"),
    ]
    for key, action, assignment in steps:
        with acting_as(db, key, action=action) as c:
            c.execute(f"update app.stories set {assignment} where id = %s", (story.id,))
    with acting_as(db, orch, action="story.review_complete") as c:
        c.execute("insert into app.reviews (tenant_id, story_id, reviewer_agent_id, "
                  "reviewer_key_id, review_type) values (%s, %s, %s, %s, 'full')",
                  (t.id, story.id, orch.agent_id, orch.id))
    with acting_as(db, orch, action="story.verify") as c:
        c.execute("update app.stories set verified_status = 'verified' where id = %s",
                  (story.id,))
    other_story = make_story(db, t.id, story.project_id, "9.9")
    db.execute("update app.stories set title = 'unrelated' where id = %s", (other_story.id,))

    with as_key(db, impl) as c:
        history = call(c, "select api.story_history(%s)", (story.id,))["data"]
    got = [(e["action"], e["entity_type"], e["actor"]["agent_id"],
            (e["from"] or {}).get("agent_status"), (e["to"] or {}).get("agent_status"))
           for e in history]
    assert got == [
        ("insert", "story", None, None, "pending"),
        ("story.contract", "story", impl.agent_id, "pending", "contracted"),
        ("story.claim", "story", impl.agent_id, "contracted", "assigned"),
        ("story.start", "story", impl.agent_id, "assigned", "implementing"),
        ("story.report", "story", orch.agent_id, "implementing", "reported_done"),
        ("story.review_complete", "review", orch.agent_id, None, None),
        ("story.verify", "story", orch.agent_id, "reported_done", "reported_done"),
    ]
    seqs = [e["seq"] for e in history]
    assert seqs == sorted(seqs) and None not in seqs
    verify = history[-1]
    assert verify["to"]["verified_status"] == "verified"
    assert verify["changes"] == {"verified_status": {"from": "unverified", "to": "verified"}}


def test_story_history_404_for_unknown_or_other_tenants_story(db: Conn) -> None:
    a, b = create_tenant(db), create_tenant(db)
    story = make_story(db, a.id)
    for sid in (story.id, str(uuid.uuid4())):
        with pytest.raises(psycopg.Error) as err, as_key(db, b.user_key) as c:
            c.execute("select api.story_history(%s)", (sid,))
        assert api_error(err.value) == (404, "story_not_found")
    # a deleted story keeps its history
    db.execute("delete from app.stories where id = %s", (story.id,))
    with as_key(db, a.user_key) as c:
        history = call(c, "select api.story_history(%s)", (story.id,))["data"]
    assert [e["action"] for e in history] == ["insert", "delete"]


def test_entries_json_is_stable_text(db: Conn) -> None:
    """The canonical form is jsonb text: re-parsing and re-rendering gives the same bytes."""
    t, _ = _tenant_with_history(db, 1)
    text = call(db, "select audit.canonical_entry(e, 1)::text from audit.entries e "
                    "where tenant_id = %s order by id desc limit 1", (t.id,))
    assert call(db, "select (%s::jsonb)::text", (json.dumps(json.loads(text)),)) == text


def test_real_lifecycle_history_names_each_actor_and_the_chain_verifies(db: Conn) -> None:
    """Through the state-machine functions themselves: each transition is one entry labelled
    with its domain action and attributed to the key that made it."""
    from sm_support import call as sm_call
    from sm_support import make_story as sm_make_story
    from sm_support import make_world, review, run_to_reported

    w = make_world(db)
    sid = sm_make_story(db, w, "1.1")
    run_to_reported(db, w, sid)
    assert review(db, w.orchestrator, sid).status in (200, 201)
    reply = sm_call(db, w.orchestrator, "verify_story", story_id=sid, result="pass",
                    summary="ok", review_type="code_review")
    assert reply.status == 200, reply

    with as_key(db, w.implementer) as c:
        history = call(c, "select api.story_history(%s)", (sid,))["data"]
    story_steps = [(e["action"], e["actor"]["agent_id"]) for e in history
                   if e["entity_type"] == "story" and e["action"].startswith("story.")]
    assert story_steps == [
        ("story.contract", w.implementer.agent_id),
        ("story.claim", w.implementer.agent_id),
        ("story.start", w.implementer.agent_id),
        ("story.report", w.reporter.agent_id),
        ("story.verify", w.orchestrator.agent_id),
    ]
    # the review record is in the story's history, attributed to the reviewer
    reviews = [e for e in history if e["entity_type"] == "review"]
    assert [e["actor"]["agent_id"] for e in reviews] == [w.orchestrator.agent_id]
    assert reviews[0]["new_state"]["story_id"] == sid
    final = [e for e in history if e["entity_type"] == "story"][-1]
    assert final["to"] == {"agent_status": "reported_done", "verified_status": "verified"}
    with as_key(db, w.orchestrator) as c:
        assert call(c, "select api.verify_audit_chain()")["data"]["ok"] is True


def test_a_refused_self_report_is_in_the_trail(db: Conn) -> None:
    from sm_support import ac_count, make_world, story_row
    from sm_support import call as sm_call
    from sm_support import make_story as sm_make_story

    w = make_world(db)
    sid = sm_make_story(db, w, "1.1")
    for fn, args in (("contract_story", {"story_title": story_row(db, sid)["title"],
                                         "ac_count": ac_count(db, sid)}),
                     ("claim_story", {}), ("start_story", {})):
        assert sm_call(db, w.implementer, fn, story_id=sid, **args).status == 200
    refused = sm_call(db, w.implementer, "report_story", story_id=sid)
    assert (refused.status, refused.code) == (409, "self_report_blocked")
    with as_key(db, w.orchestrator) as c:
        history = call(c, "select api.story_history(%s)", (sid,))["data"]
    [violation] = [e for e in history if e["entity_type"] == "custody_violation"]
    assert violation["actor"]["agent_id"] == w.implementer.agent_id
    assert violation["new_state"]["code"] == "self_report_blocked"
    assert story_row(db, sid)["agent_status"] == "implementing"
