"""The `loopctl` command line: serve, db, migrate."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from loopctl import migrate
from loopctl.config import ConfigError, Settings, get_settings
from loopctl.db import DatabaseUnavailable, check_reachable, database_url, embedded_cluster
from loopctl.embedded_pg import EmbeddedPgError, port_is_free
from loopctl.gateway.credentials import authenticator_password, ensure_authenticator
from loopctl.operator_cli import OperatorError, add_commands

EXPECTED_ERRORS = (EmbeddedPgError, DatabaseUnavailable, migrate.MigrationError, ConfigError,
                   OperatorError)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    host = args.host or settings.host
    port = args.port or settings.port
    if not port_is_free(port, host):
        raise DatabaseUnavailable(f"cannot listen on {host}:{port}: address already in use")
    url = database_url(settings)
    check_reachable(url)
    if not args.no_migrate:
        migrate.deploy(url, settings.migrations_dir)
    ensure_authenticator(url, authenticator_password(settings, url))
    import uvicorn

    from loopctl.app import create_app
    from loopctl.worker.runner import BackgroundWorker, publish_installation_settings

    publish_installation_settings(url, settings)
    from loopctl.knowledge.service import publish_embedding_settings

    publish_embedding_settings(url, settings, host, port)
    # On the embedded database there is no separate worker process to run: serve runs one.
    background = (BackgroundWorker(url, settings).start()
                  if settings.worker_in_serve and not settings.database_url else None)
    try:
        uvicorn.run(create_app(settings, url), host=host, port=port, log_level="info",
                    access_log=settings.access_log)
    finally:
        if background is not None:
            background.stop()
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    import logging

    from loopctl.worker.runner import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    url = database_url(settings)
    check_reachable(url)
    run_worker(url, settings)
    return 0


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    cluster = embedded_cluster(settings)
    if args.action == "start":
        cluster.start()
        cluster.ensure_database("loopctl")
        print(json.dumps(cluster.status()))
    elif args.action == "stop":
        cluster.stop()
        print(json.dumps(cluster.status()))
    elif args.action == "status":
        status = cluster.status()
        print(json.dumps(status))
        return 0 if status["running"] else 3
    elif args.action == "url":
        if not cluster.initialized:
            raise EmbeddedPgError("the embedded cluster is not initialised: loopctl db start")
        print(cluster.url("loopctl"))
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    url = database_url(settings)
    check_reachable(url)
    if args.revert:
        migrate.revert(url, settings.migrations_dir, args.to)
    else:
        migrate.deploy(url, settings.migrations_dir, args.to)
        ensure_authenticator(url, authenticator_password(settings, url))
    print(json.dumps({"migrated": "reverted" if args.revert else "deployed", "to": args.to}))
    return 0


def cmd_mcp(args: argparse.Namespace, settings: Settings) -> int:
    from loopctl.mcp_tools.stdio import run_stdio

    return run_stdio()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loopctl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service (embedded Postgres by default)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--no-migrate", action="store_true", help="do not deploy migrations")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser(
        "worker", help="deliver webhooks and run background jobs (several may run at once)")
    worker.set_defaults(func=cmd_worker)

    db = sub.add_parser("db", help="manage the embedded PostgreSQL cluster")
    db.add_argument("action", choices=["start", "stop", "status", "url"])
    db.set_defaults(func=cmd_db)

    mig = sub.add_parser("migrate", help="sqitch deploy --verify (or revert)")
    mig.add_argument("--revert", action="store_true", help="revert instead of deploy")
    mig.add_argument("--to", help="target change (deploy up to / revert down to)")
    mig.set_defaults(func=cmd_migrate)
    mcp = sub.add_parser("mcp", help="MCP server over stdio (LOOPCTL_SERVER, LOOPCTL_*_KEY)")
    mcp.set_defaults(func=cmd_mcp)
    add_commands(sub)  # tenant create, key create (operator bootstrap)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace, Settings], int] = args.func
    try:
        return handler(args, get_settings())
    except EXPECTED_ERRORS as exc:
        print(f"loopctl: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
