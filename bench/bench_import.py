"""A full-size import (500 epics x 10 stories, 2 criteria each, a dependency chain in every
epic and between epics) through api.import_project, next to two baselines on one throwaway
PostgreSQL:

- bare COPY: the same rows COPYed in with client-made ids (no validation, no duplicate /
  reference / cycle checks; constraints, foreign keys and audit triggers fire in both),
  i.e. the floor;
- one call per row: stories created one by one through api.create_story (a sample,
  extrapolated per story), i.e. what a client would do without the import.

Also times a no-op merge of the same payload and the cycle check alone.

    PYTHONPATH=service .venv/bin/python bench/bench_import.py [--epics 500] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from loopctl.testing import Key, TestServer, create_tenant

STORIES_PER_EPIC = 10


def payload(epics: int) -> dict[str, Any]:
    return {
        "epics": [{"number": e, "title": f"Epic {e}", "phase": "build", "stories": [
            {"number": f"{e}.{s}", "title": f"Story {e}.{s}", "description": "x" * 200,
             "estimated_hours": 2,
             "acceptance_criteria": [{"criterion": "it works"}, {"criterion": "it is tested"}]}
            for s in range(STORIES_PER_EPIC)]} for e in range(epics)],
        "story_dependencies": [{"story": f"{e}.{s}", "depends_on": f"{e}.{s - 1}"}
                               for e in range(epics) for s in range(1, STORIES_PER_EPIC)],
        "epic_dependencies": [{"epic": e, "depends_on": e - 1} for e in range(1, epics)],
    }


def as_user(db: psycopg.Connection[Any], key: Key) -> None:
    db.execute("select set_config('role', 'loopctl_user', true), "
               "set_config('request.jwt.claims', %s, true)", (json.dumps(key.claims),))


def new_project(db: psycopg.Connection[Any], tenant_id: str) -> str:
    pid = str(uuid.uuid4())
    db.execute("insert into app.projects (tenant_id, id, name, slug) values (%s, %s, 'P', %s)",
               (tenant_id, pid, f"p-{pid[:8]}"))
    return pid


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def api_import(db: psycopg.Connection[Any], key: Key, pid: str, doc: dict[str, Any],
               merge: bool = False) -> dict[str, Any]:
    with db.transaction():
        as_user(db, key)
        row = db.execute("select api.import_project(project_id => %s, payload => %s, "
                         "merge => %s)", (pid, Jsonb(doc), merge)).fetchone()
    assert row is not None
    return row[0]


def bare_inserts(db: psycopg.Connection[Any], tenant_id: str, pid: str,
                 doc: dict[str, Any]) -> None:
    """The floor: the same rows COPYed in with ids made client-side (no lookups, no checks;
    constraints, foreign keys and audit triggers still apply)."""
    epic_ids = {e["number"]: str(uuid.uuid4()) for e in doc["epics"]}
    story_ids = {s["number"]: str(uuid.uuid4()) for e in doc["epics"] for s in e["stories"]}
    with db.transaction():
        db.execute("select set_config('loopctl.audit_action', 'bench.bare', true)")
        with db.cursor().copy("copy app.epics (tenant_id, id, project_id, number, title, phase, "
                              "position) from stdin") as copy:
            for e in doc["epics"]:
                copy.write_row((tenant_id, epic_ids[e["number"]], pid, e["number"], e["title"],
                                e["phase"], e["number"]))
        with db.cursor().copy("copy app.stories (tenant_id, id, project_id, epic_id, number, "
                              "title, description, estimated_hours) from stdin") as copy:
            for e in doc["epics"]:
                for s in e["stories"]:
                    copy.write_row((tenant_id, story_ids[s["number"]], pid, epic_ids[e["number"]],
                                    s["number"], s["title"], s["description"],
                                    s["estimated_hours"]))
        with db.cursor().copy("copy app.acceptance_criteria (tenant_id, story_id, ac_id, "
                              "position, description) from stdin") as copy:
            for e in doc["epics"]:
                for s in e["stories"]:
                    for i, c in enumerate(s["acceptance_criteria"], 1):
                        copy.write_row((tenant_id, story_ids[s["number"]], f"AC-{i}", i,
                                        c["criterion"]))
        with db.cursor().copy("copy app.story_dependencies (tenant_id, story_id, "
                              "depends_on_story_id) from stdin") as copy:
            for d in doc["story_dependencies"]:
                copy.write_row((tenant_id, story_ids[d["story"]], story_ids[d["depends_on"]]))
        with db.cursor().copy("copy app.epic_dependencies (tenant_id, epic_id, "
                              "depends_on_epic_id) from stdin") as copy:
            for d in doc["epic_dependencies"]:
                copy.write_row((tenant_id, epic_ids[d["epic"]], epic_ids[d["depends_on"]]))


def one_by_one(db: psycopg.Connection[Any], key: Key, pid: str, doc: dict[str, Any],
               sample_epics: int) -> int:
    made = 0
    for epic in doc["epics"][:sample_epics]:
        with db.transaction():
            as_user(db, key)
            eid = db.execute("select api.create_epic(project_id => %s, number => %s, "
                             "title => %s) ->> 'id'", (pid, epic["number"], epic["title"])
                             ).fetchone()[0]
        for s in epic["stories"]:
            with db.transaction():
                as_user(db, key)
                db.execute("select api.create_story(project_id => %s, epic_id => %s, "
                           "number => %s, title => %s, description => %s, "
                           "estimated_hours => %s, acceptance_criteria => %s)",
                           (pid, eid, s["number"], s["title"], s["description"],
                            s["estimated_hours"], Jsonb(s["acceptance_criteria"])))
            made += 1
    return made


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epics", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sample-epics", type=int, default=30,
                        help="epics created one call per row for the per-row baseline")
    args = parser.parse_args()
    doc = payload(args.epics)
    n_stories = args.epics * STORIES_PER_EPIC

    server = TestServer()
    server.start()
    try:
        name, url = server.clone()
        with psycopg.connect(url, autocommit=True) as db:
            tenant = create_tenant(db)
            # The bare path writes as the superuser (no RLS check, no validation).
            api_times, bare_times = [], []
            for _ in range(args.runs):  # alternate so drift hits both
                pid = new_project(db, tenant.id)
                api_times.append(timed(lambda p=pid: api_import(db, tenant.user_key, p, doc)))
                pid = new_project(db, tenant.id)
                bare_times.append(timed(lambda p=pid: bare_inserts(db, tenant.id, p, doc)))
            merge_pid = new_project(db, tenant.id)
            api_import(db, tenant.user_key, merge_pid, doc)
            merge_time = timed(lambda: api_import(db, tenant.user_key, merge_pid, doc, True))

            edges = db.execute(
                "select array_agg('s:' || a), array_agg('s:' || b) from (select d ->> 'story' a, "
                "d ->> 'depends_on' b from jsonb_array_elements(%s::jsonb) d) x",
                (json.dumps(doc["story_dependencies"]),)).fetchone()
            cycle_time = timed(lambda: db.execute("select app.wm_find_cycles(%s, %s)", edges))

            pid = new_project(db, tenant.id)
            start = time.perf_counter()
            made = one_by_one(db, tenant.user_key, pid, doc, args.sample_epics)
            per_row = (time.perf_counter() - start) / made
        server.drop_database(name)
    finally:
        server.stop()

    api_med, bare_med = statistics.median(api_times), statistics.median(bare_times)
    print(f"payload: {args.epics} epics, {n_stories} stories, {2 * n_stories} criteria, "
          f"{len(doc['story_dependencies']) + len(doc['epic_dependencies'])} dependencies")
    print(f"api.import_project     median {api_med:7.2f} s  "
          f"({n_stories / api_med:8.0f} stories/s)  runs {[round(t, 2) for t in api_times]}")
    print(f"bare COPY baseline     median {bare_med:7.2f} s  "
          f"({n_stories / bare_med:8.0f} stories/s)  runs {[round(t, 2) for t in bare_times]}")
    print(f"  ratio import / bare COPY: {api_med / bare_med:5.2f}x "
          "(cost of validation, duplicate/reference/cycle checks, event)")
    print(f"merge of the same payload (no-op) {merge_time:7.2f} s")
    print(f"cycle check alone ({len(doc['story_dependencies'])} edges) {cycle_time * 1000:7.1f} ms")
    print(f"one api.create_story per row: {per_row * 1000:6.2f} ms/story -> "
          f"{per_row * n_stories:7.1f} s extrapolated for {n_stories}")
    print(f"  ratio one-by-one / import: {per_row * n_stories / api_med:5.1f}x")


if __name__ == "__main__":
    main()
