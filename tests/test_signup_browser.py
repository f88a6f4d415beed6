"""Issue #9: a person's path through the real pages in headless Chromium, with the DevTools
virtual authenticator (CDP WebAuthn domain) standing in for a security key: sign up, see
the key, copy it, sign in again, mint an agent key, add a second passkey and sign in
with it. Screenshots land in tests/artifacts/.

Chromium is driven over the DevTools protocol directly (a websocket), which works offline
and needs nothing beyond the `chromium` package (scripts/provision-test.sh).
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from websockets.sync.client import ClientConnection, connect

from loopctl.embedded_pg import free_port
from loopctl.testing import Key, ServerProcess, as_key

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed: "
                       "run scripts/provision-test.sh (scripts/test.sh does)"),
]


class Page:
    """One Chromium tab over CDP: evaluate, click, type, wait, screenshot."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg["result"]
                return result

    def eval(self, expression: str, *, await_promise: bool = False) -> Any:
        r = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                      awaitPromise=await_promise, userGesture=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = self.eval(expression)
            except RuntimeError:
                value = None
            if value:
                return value
            time.sleep(0.1)
        error = self.eval("(document.getElementById('error') || {}).textContent || ''")
        raise AssertionError(f"timed out waiting for {expression!r}; page error: {error!r}")

    def goto(self, url: str, lands_on: str | None = None) -> None:
        self.send("Page.navigate", url=url)
        self.wait_for(f"location.href === {json.dumps(lands_on or url)} && "
                      "document.readyState === 'complete'")

    def click(self, selector: str) -> None:
        """A real mouse click (trusted event, user activation) at the element's centre."""
        box = self.wait_for(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e || e.offsetParent === null) return null; e.scrollIntoView();"
            " const r = e.getBoundingClientRect();"
            " return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"],
                      button="left", clickCount=1)

    def fill(self, selector: str, value: str) -> None:
        self.eval(f"document.querySelector({json.dumps(selector)}).focus()")
        self.eval(f"document.querySelector({json.dumps(selector)}).value = ''")
        self.send("Input.insertText", text=value)

    def text(self, selector: str) -> str:
        return str(self.eval(f"document.querySelector({json.dumps(selector)}).textContent"))

    def screenshot(self, name: str) -> Path:
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"signup-{name}.png"
        path.write_bytes(base64.b64decode(data["data"]))
        return path


@pytest.fixture
def chromium() -> Iterator[Page]:
    assert CHROMIUM is not None
    profile = tempfile.mkdtemp(prefix="loopctl-chromium-")
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-background-networking",
         "--disable-gpu", "--no-first-run", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--remote-debugging-port=0",
         "--window-size=1000,1200", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = Path(profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            assert proc.poll() is None and time.monotonic() < deadline, "chromium did not start"
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        tab = next(t for t in targets if t["type"] == "page")
        with connect(tab["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024,
                     open_timeout=30) as ws:
            page = Page(ws)
            page.send("Page.enable")
            page.send("Runtime.enable")
            yield page
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def whoami(admin: psycopg.Connection[Any], key: Key) -> dict[str, Any]:
    with as_key(admin, key) as c:
        return c.execute("select api.whoami()").fetchone()[0]


def test_a_person_signs_up_copies_the_key_signs_in_and_mints_an_agent_key(
        fresh_db: str, chromium: Page) -> None:
    port = free_port()
    origin = f"http://localhost:{port}"  # a secure context; the RP ID is "localhost"
    env = {"LOOPCTL_DATABASE_URL": fresh_db, "LOOPCTL_WEBAUTHN_RP_ID": "localhost",
           "LOOPCTL_WEBAUTHN_ORIGIN": origin}
    page = chromium
    with ServerProcess(env, "--no-migrate", port=port), \
            psycopg.connect(fresh_db, autocommit=True) as admin:
        page.send("WebAuthn.enable", enableUI=False)
        authenticator = page.send("WebAuthn.addVirtualAuthenticator", options={
            "protocol": "ctap2", "transport": "usb", "hasResidentKey": True,
            "hasUserVerification": True, "isUserVerified": True,
            "automaticPresenceSimulation": True})["authenticatorId"]
        page.send("Browser.grantPermissions", origin=origin,
                  permissions=["clipboardReadWrite", "clipboardSanitizedWrite"])
        page.send("Emulation.setFocusEmulationEnabled", enabled=True)

        # 1. Sign up: the form, then the passkey ceremony.
        page.goto(f"{origin}/signup")
        page.fill("#name", "Acme Rockets")
        page.fill("#slug", "acme-rockets")
        page.fill("#email", "ops@acme.example")
        page.fill("#authenticator-name", "virtual key")
        page.screenshot("1-signup-form")
        page.click("#signup-submit")
        page.wait_for("!document.getElementById('result').classList.contains('hidden')")
        raw = page.text("#raw-key")
        assert raw.startswith("lc_") and len(raw) == 43
        assert raw in page.text("#curl-snippet") and raw in page.text("#mcp-snippet")
        page.screenshot("2-key-shown")
        creds = page.send("WebAuthn.getCredentials", authenticatorId=authenticator)
        assert len(creds["credentials"]) == 1 and creds["credentials"][0]["isResidentCredential"]

        tenant_id, key_id = admin.execute(
            "select t.id::text, k.id::text from app.tenants t join app.api_keys k"
            " on k.tenant_id = t.id where t.slug = 'acme-rockets'").fetchone()
        assert whoami(admin, Key(raw, "user", tenant_id, key_id))["role"] == "user"

        # 2. Copy it: the button puts the key on the clipboard.
        page.click("#copy-key")
        page.wait_for("document.getElementById('copy-status').textContent === 'Copied'")
        assert page.eval("navigator.clipboard.readText()", await_promise=True) == raw
        page.screenshot("3-key-copied")

        # 3. Sign in again, in a fresh session (the signup session cookie is dropped).
        page.send("Network.enable")
        page.send("Network.clearBrowserCookies")
        page.goto(f"{origin}/keys", lands_on=f"{origin}/signin")  # not signed in
        page.screenshot("4-signin")
        page.click("#signin-submit")
        page.wait_for(f"location.href === {json.dumps(origin + '/keys')} && "
                      "document.body.dataset.ready === '1'")
        assert page.text("#tenant-slug") == "acme-rockets"
        assert page.eval("document.querySelectorAll('#keys tr').length") == 1
        assert page.eval("document.cookie") == ""  # the session cookie is HttpOnly
        page.screenshot("5-signed-in-keys")
        sign_count = admin.execute("select sign_count from app.webauthn_credentials"
                                   " where tenant_id = %s", (tenant_id,)).fetchone()[0]
        assert sign_count >= 1

        # 4. Mint an agent key bound to a new agent.
        page.fill("#key-name", "builder")
        page.eval("document.getElementById('key-role').value = 'agent'")
        page.fill("#key-agent", "builder-1")
        page.click("#create-key-submit")
        page.wait_for("!document.getElementById('new-key').classList.contains('hidden') && "
                      "document.querySelectorAll('#keys tr').length === 2")
        agent_raw = page.text("#new-raw-key")
        page.screenshot("6-agent-key")
        agent_id, agent_key_id = admin.execute(
            "select a.id::text, k.id::text from app.agents a join app.api_keys k on"
            " k.agent_id = a.id where a.tenant_id = %s and a.name = 'builder-1'",
            (tenant_id,)).fetchone()
        me = whoami(admin, Key(agent_raw, "agent", tenant_id, agent_key_id))
        assert (me["tenant_id"], me["role"], me["agent_id"]) == (tenant_id, "agent", agent_id)

        # 5. A second passkey: unplug the first key, plug in another, add it, sign out and
        #    back in with it.
        page.send("WebAuthn.removeVirtualAuthenticator", authenticatorId=authenticator)
        spare = page.send("WebAuthn.addVirtualAuthenticator", options={
            "protocol": "ctap2", "transport": "usb", "hasResidentKey": True,
            "hasUserVerification": True, "isUserVerified": True,
            "automaticPresenceSimulation": True})["authenticatorId"]
        page.fill("#authenticator-name", "spare key")
        page.click("#add-authenticator")
        page.wait_for("document.querySelectorAll('#authenticators tr').length === 2")
        page.click("#signout")
        page.wait_for(f"location.href === {json.dumps(origin + '/signin')} && "
                      "document.readyState === 'complete'")
        page.click("#signin-submit")
        page.wait_for(f"location.href === {json.dumps(origin + '/keys')} && "
                      "document.body.dataset.ready === '1'")
        page.screenshot("7-second-passkey")
        used = admin.execute("select name from app.webauthn_credentials where tenant_id = %s"
                             " and sign_count > 0 order by last_used_at desc limit 1",
                             (tenant_id,)).fetchone()[0]
        assert used == "spare key"
        assert len(page.send("WebAuthn.getCredentials", authenticatorId=spare)["credentials"]) == 1

    for step in ("1-signup-form", "2-key-shown", "3-key-copied", "4-signin",
                 "5-signed-in-keys", "6-agent-key", "7-second-passkey"):
        shot = ARTIFACTS / f"signup-{step}.png"
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 2000
