"""Schemathesis against /api/v1/openapi.json (bounded, for CI): for every /api/v1
operation, generated requests never get a 5xx, every status is documented, and every
response matches its documented schema and content type."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from gateway_helpers import serve

from loopctl.testing import ServerProcess, create_tenant

CHECKS = ("not_a_server_error,status_code_conformance,response_schema_conformance,"
          "content_type_conformance")


@pytest.fixture(scope="module")
def server(module_db: str) -> Iterator[ServerProcess]:
    with serve(module_db) as s:
        yield s


def schemathesis_cli() -> list[str]:
    exe = Path(sys.executable).with_name("schemathesis")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("schemathesis")
    assert found, "schemathesis is not installed (pip install -e '.[test]')"
    return [found]


def test_api_v1_conforms_to_its_openapi(server: ServerProcess, module_db: str) -> None:
    with psycopg.connect(module_db, autocommit=True) as admin:
        tenant = create_tenant(admin, settings={"rate_limit_per_minute": 1_000_000})
    proc = subprocess.run(
        [*schemathesis_cli(), "run", server.base_url + "/api/v1/openapi.json",
         "--checks", CHECKS, "--include-path-regex", "^/api/v1/",
         "-H", f"Authorization: Bearer {tenant.user_key.raw}",
         "--max-examples", "4", "--seed", "4", "--generation-deterministic",
         "--phases", "examples,coverage,fuzzing", "--suppress-health-check", "all",
         "--request-timeout", "30", "--workers", "1", "--no-color"],
        capture_output=True, text=True, timeout=600, check=False)
    # The full report, for a failure: the runtime errors section comes before the summary.
    errors = proc.stdout.find("ERRORS")
    report = (proc.stdout[errors:errors + 4000] if errors >= 0 else "") + proc.stdout[-3000:]
    assert proc.returncode == 0, report
    assert "passed" in proc.stdout, report
