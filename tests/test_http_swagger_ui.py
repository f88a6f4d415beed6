"""Swagger UI renders in headless Chromium from assets this server ships: the operations
appear on the page, and no request leaves the machine (every other host is unresolvable
for the browser, and the server log shows the assets were served locally)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import httpx
import pytest
from gateway_helpers import serve

from loopctl.testing import ServerProcess

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def server(module_db: str) -> Iterator[ServerProcess]:
    # The access log is this test's evidence that the assets came from this server.
    with serve(module_db, LOOPCTL_ACCESS_LOG="true") as s:
        yield s


def render(url: str) -> str:
    assert CHROMIUM, "chromium is not installed: scripts/provision-test.sh"
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update",
             "--disable-default-apps", "--disable-sync", "--no-first-run",
             "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
             f"--user-data-dir={profile}", "--virtual-time-budget=15000",
             "--dump-dom", url],
            capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.parametrize("path", ["/swaggerui", "/docs"])
def test_swagger_ui_renders_the_operations_offline(server: ServerProcess, path: str) -> None:
    dom = render(server.base_url + path)
    assert "swagger-ui" in dom
    assert 'class="opblock' in dom, dom[-2000:]  # operations were rendered from the spec
    text = dom.replace("<wbr>", "").replace("\u200b", "")  # Swagger UI breaks long paths
    for operation in ("/api/v1/stories/{id}/claim", "/api/v1/projects/{id}/import",
                      "/api/v1/agents/register"):
        assert operation in text, operation
    log = server.log()
    assert "GET /swaggerui/assets/swagger-ui-bundle.js" in log
    assert "GET /api/v1/openapi.json" in log


def test_assets_are_served_locally(server: ServerProcess) -> None:
    page = httpx.get(server.base_url + "/swaggerui").text
    assert "http://" not in page and "https://" not in page  # nothing from a CDN
    js = httpx.get(server.base_url + "/swaggerui/assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000
