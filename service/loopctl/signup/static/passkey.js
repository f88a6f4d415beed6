// loopctl passkey pages: WebAuthn ceremonies and key management. No external assets.
"use strict";

const $ = (id) => document.getElementById(id);

function b64urlToBuf(s) {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4);
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out.buffer;
}

function bufToB64url(buf) {
  const bytes = new Uint8Array(buf);
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function creationOptions(o) {
  return {
    ...o,
    challenge: b64urlToBuf(o.challenge),
    user: { ...o.user, id: b64urlToBuf(o.user.id) },
    excludeCredentials: (o.excludeCredentials || []).map((c) => ({ ...c, id: b64urlToBuf(c.id) })),
  };
}

function requestOptions(o) {
  return {
    ...o,
    challenge: b64urlToBuf(o.challenge),
    allowCredentials: (o.allowCredentials || []).map((c) => ({ ...c, id: b64urlToBuf(c.id) })),
  };
}

function credentialJSON(cred) {
  const r = cred.response;
  const response = { clientDataJSON: bufToB64url(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = bufToB64url(r.attestationObject);
    response.transports = r.getTransports ? r.getTransports() : [];
  } else {
    response.authenticatorData = bufToB64url(r.authenticatorData);
    response.signature = bufToB64url(r.signature);
    if (r.userHandle) response.userHandle = bufToB64url(r.userHandle);
  }
  return {
    id: cred.id, rawId: bufToB64url(cred.rawId), type: cred.type, response,
    authenticatorAttachment: cred.authenticatorAttachment || undefined,
    clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
  };
}

async function call(method, path, body) {
  const init = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) {
    const msg = data && data.message ? data.message
      : data && data.detail ? JSON.stringify(data.detail) : res.statusText;
    const err = new Error(msg);
    err.status = res.status;
    err.code = data && data.code;
    throw err;
  }
  return data;
}

function showError(e) {
  $("error").textContent = e ? (e.message || String(e)) : "";
}

async function copyText(text, statusEl) {
  try {
    await navigator.clipboard.writeText(text);
  } catch (e) {
    // Fallback without the async clipboard API (older browsers, no permission).
    const ta = document.createElement("textarea");
    ta.value = text;
    document.body.appendChild(ta);
    ta.select();
    document.execCommand("copy");
    ta.remove();
  }
  statusEl.textContent = "Copied";
  statusEl.dataset.copied = text.slice(0, 8);
}

function td(text) {
  const c = document.createElement("td");
  c.textContent = text == null ? "" : String(text);
  return c;
}

function when(ts) {
  return ts ? new Date(ts).toLocaleString() : "";
}

// -- signup ------------------------------------------------------------------------------
async function signup(ev) {
  ev.preventDefault();
  showError(null);
  $("signup-submit").disabled = true;
  try {
    const begun = await call("POST", "/signup/options", {
      name: $("name").value, slug: $("slug").value, email: $("email").value,
    });
    const cred = await navigator.credentials.create({ publicKey: creationOptions(begun.publicKey) });
    const done = await call("POST", "/signup/verify", {
      credential: credentialJSON(cred), name: $("authenticator-name").value || null,
    });
    $("signup-section").classList.add("hidden");
    $("tenant-slug").textContent = done.tenant.slug;
    $("raw-key").textContent = done.api_key.raw_key;
    $("curl-snippet").textContent = done.next_steps.curl;
    $("mcp-snippet").textContent = done.next_steps.mcp_json;
    $("result").classList.remove("hidden");
    $("copy-key").addEventListener("click", () =>
      copyText(done.api_key.raw_key, $("copy-status")));
  } catch (e) {
    showError(e);
  } finally {
    $("signup-submit").disabled = false;
  }
}

// -- sign-in -----------------------------------------------------------------------------
async function signin(ev) {
  ev.preventDefault();
  showError(null);
  $("signin-submit").disabled = true;
  try {
    const begun = await call("POST", "/signin/options", { slug: $("slug").value || null });
    const cred = await navigator.credentials.get({ publicKey: requestOptions(begun.publicKey) });
    await call("POST", "/signin/verify", { credential: credentialJSON(cred) });
    window.location.assign("/keys");
  } catch (e) {
    showError(e);
    $("signin-submit").disabled = false;
  }
}

// -- keys --------------------------------------------------------------------------------
async function loadKeys() {
  let info;
  try {
    info = await call("GET", "/session");
  } catch (e) {
    if (e.status === 401) { window.location.assign("/signin"); return; }
    throw e;
  }
  $("tenant-name").textContent = info.tenant.name;
  $("tenant-slug").textContent = info.tenant.slug;
  const keys = await call("GET", "/session/keys");
  const body = $("keys");
  body.replaceChildren();
  for (const k of keys) {
    const tr = document.createElement("tr");
    tr.dataset.keyId = k.id;
    tr.append(td(k.name), td(k.role), td(k.agent_name), td(k.key_prefix), td(when(k.expires_at)),
      td(when(k.last_used_at)), td(k.revoked_at ? "revoked" : "active"));
    const actions = document.createElement("td");
    if (!k.revoked_at) {
      for (const [label, action] of [["Rotate", "rotate"], ["Revoke", "revoke"]]) {
        const b = document.createElement("button");
        b.className = "small";
        b.type = "button";
        b.textContent = label;
        b.dataset.action = action;
        b.addEventListener("click", () => keyAction(k, action));
        actions.append(b);
      }
    }
    tr.append(actions);
    body.append(tr);
  }
  const auths = $("authenticators");
  auths.replaceChildren();
  for (const a of info.authenticators) {
    const tr = document.createElement("tr");
    tr.append(td(a.name), td(when(a.created_at)), td(when(a.last_used_at)));
    const actions = document.createElement("td");
    if (info.authenticators.length > 1) {
      const b = document.createElement("button");
      b.className = "small";
      b.type = "button";
      b.textContent = "Remove";
      b.addEventListener("click", () => guarded(async () => {
        await call("POST", `/session/authenticators/${a.id}/remove`);
        await loadKeys();
      }));
      actions.append(b);
    }
    tr.append(actions);
    auths.append(tr);
  }
  $("add-authenticator").disabled = info.authenticators.length >= 5;
}

function showNewKey(key) {
  $("new-key-name").textContent = key.name;
  $("new-raw-key").textContent = key.raw_key;
  $("copy-status").textContent = "";
  $("new-key").classList.remove("hidden");
  $("copy-new-key").onclick = () => copyText(key.raw_key, $("copy-status"));
}

async function guarded(fn) {
  showError(null);
  try { await fn(); } catch (e) { showError(e); }
}

function keyAction(k, action) {
  return guarded(async () => {
    if (action === "revoke" && !window.confirm(`Revoke key ${k.name}?`)) return;
    const res = await call("POST", `/session/keys/${k.id}/${action}`);
    if (action === "rotate") showNewKey(res);
    await loadKeys();
  });
}

function createKey(ev) {
  ev.preventDefault();
  return guarded(async () => {
    const expires = $("key-expires").value;
    const key = await call("POST", "/session/keys", {
      name: $("key-name").value, role: $("key-role").value,
      agent_name: $("key-agent").value || null,
      expires_at: expires ? new Date(expires).toISOString() : null,
    });
    showNewKey(key);
    $("create-key").reset();
    await loadKeys();
  });
}

function addAuthenticator() {
  return guarded(async () => {
    const begun = await call("POST", "/session/authenticators/options");
    const cred = await navigator.credentials.create({ publicKey: creationOptions(begun.publicKey) });
    await call("POST", "/session/authenticators/verify", {
      credential: credentialJSON(cred), name: $("authenticator-name").value || null,
    });
    $("authenticator-name").value = "";
    await loadKeys();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (!window.PublicKeyCredential && page !== "keys") {
    showError(new Error("This browser does not support passkeys (WebAuthn)."));
  }
  if (page === "signup") $("signup-form").addEventListener("submit", signup);
  if (page === "signin") $("signin-form").addEventListener("submit", signin);
  if (page === "keys") {
    $("create-key").addEventListener("submit", createKey);
    $("add-authenticator").addEventListener("click", addAuthenticator);
    $("signout").addEventListener("click", () => guarded(async () => {
      await call("POST", "/signout");
      window.location.assign("/signin");
    }));
    guarded(loadKeys).then(() => { document.body.dataset.ready = "1"; });
  }
});
