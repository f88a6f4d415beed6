"""Bootstrapping without a browser (SPEC §13): `loopctl tenant create` and
`loopctl key create`, run by the installation operator over the admin connection. The
SQL does the work (app.create_tenant, app.mint_key); this only parses and prints."""

from __future__ import annotations

import argparse
import contextlib
import json
import uuid
from typing import Any

import psycopg

from loopctl.config import Settings
from loopctl.db import check_reachable, database_url


class OperatorError(RuntimeError):
    """A refused bootstrap command, worded for one CLI line."""


def _connect(settings: Settings) -> psycopg.Connection[Any]:
    url = database_url(settings)
    check_reachable(url)
    return psycopg.connect(url, autocommit=True)


def _refusal(exc: psycopg.Error) -> OperatorError:
    message = exc.diag.message_primary or str(exc)
    if exc.diag.sqlstate == "PGRST":
        with contextlib.suppress(ValueError, KeyError, TypeError):
            message = json.loads(message)["message"]
    return OperatorError(message)


def _emit(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, default=str, indent=2))
        return
    for key, value in result.items():
        print(f"{key}: {json.dumps(value, default=str)}")


def cmd_tenant_create(args: argparse.Namespace, settings: Settings) -> int:
    with _connect(settings) as conn:
        try:
            row = conn.execute("select app.create_tenant(%s, %s, %s)",
                               (args.name, args.slug, args.email)).fetchone()
        except psycopg.Error as exc:
            raise _refusal(exc) from None
    assert row is not None
    data = row[0]
    _emit({"tenant": data["tenant"], "api_key": data["api_key"],
           "note": "the raw key is shown once; store it now"}, args.json)
    return 0


def cmd_key_create(args: argparse.Namespace, settings: Settings) -> int:
    with _connect(settings) as conn, conn.transaction():
        try:
            found = conn.execute("select id from app.tenants where slug = %s",
                                 (args.tenant,)).fetchone()
            if found is None:
                raise OperatorError(f"no tenant with slug {args.tenant!r}")
            tenant_id = found[0]
            agent: dict[str, Any] | None = None
            if args.agent:
                if args.role == "user":
                    raise OperatorError("user keys are not bound to agents")
                agent_row = conn.execute(
                    "select id, name, agent_type from app.agents "
                    "where tenant_id = %s and name = %s", (tenant_id, args.agent)).fetchone()
                if agent_row is None:
                    agent_id = uuid.uuid4()
                    agent_type = "orchestrator" if args.role == "orchestrator" else "implementer"
                    conn.execute(
                        "insert into app.agents (tenant_id, id, name, agent_type, lineage) "
                        "values (%s, %s, %s, %s, array[%s::uuid])",
                        (tenant_id, agent_id, args.agent, agent_type, agent_id))
                    agent = {"id": str(agent_id), "name": args.agent,
                             "agent_type": agent_type, "created": True}
                else:
                    agent = {"id": str(agent_row[0]), "name": agent_row[1],
                             "agent_type": agent_row[2], "created": False}
            key_row = conn.execute(
                "select app.mint_key(%s, %s, %s, %s::uuid)",
                (tenant_id, args.name, args.role, agent["id"] if agent else None)).fetchone()
        except psycopg.Error as exc:
            raise _refusal(exc) from None
    assert key_row is not None
    _emit({"tenant": {"id": str(tenant_id), "slug": args.tenant}, "agent": agent,
           "api_key": key_row[0], "note": "the raw key is shown once; store it now"},
          args.json)
    return 0


def add_commands(sub: Any) -> None:
    tenant = sub.add_parser("tenant", help="operator: tenants").add_subparsers(
        dest="tenant_command", required=True)
    create = tenant.add_parser("create", help="create a tenant and its first user key")
    create.add_argument("--name", required=True)
    create.add_argument("--slug", required=True)
    create.add_argument("--email", required=True)
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(func=cmd_tenant_create)

    key = sub.add_parser("key", help="operator: API keys").add_subparsers(
        dest="key_command", required=True)
    kc = key.add_parser("create", help="mint an API key (the raw key is printed once)")
    kc.add_argument("--tenant", required=True, help="tenant slug")
    kc.add_argument("--role", required=True, choices=["user", "orchestrator", "agent"])
    kc.add_argument("--name", required=True)
    kc.add_argument("--agent", help="bind the key to this agent (created if needed)")
    kc.add_argument("--json", action="store_true", help="print JSON")
    kc.set_defaults(func=cmd_key_create)
