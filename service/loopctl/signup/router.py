"""HTTP routes of passkey signup and sign-in: three pages and the JSON calls behind them.

Every route is one SQL call into functions/signup.sql (auth schema) plus, for ceremonies,
the signature check in ceremony.py. Nothing here is under /api/v1: no API call can create a
tenant (SPEC §12).
"""

from __future__ import annotations

import json
from datetime import datetime
from importlib import resources
from typing import Any
from uuid import UUID

import psycopg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from psycopg_pool import ConnectionPool
from pydantic import BaseModel, Field

from loopctl.config import Settings
from loopctl.signup import ceremony

SESSION_COOKIE = "loopctl_session"
STATIC = resources.files("loopctl.signup") / "static"
# Pages load only their own script and stylesheet; nothing external, nothing inline.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

router = APIRouter(tags=["signup"], include_in_schema=False)


class SignupError(Exception):
    """An error answer: HTTP status and the PostgREST-shaped body."""

    def __init__(self, status: int, code: str, message: str,
                 details: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"code": code, "message": message, "details": details, "hint": None}
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


class SignupBegin(BaseModel):
    name: str = Field(max_length=1000)
    slug: str = Field(max_length=1000)
    email: str = Field(max_length=1000)


class SigninBegin(BaseModel):
    slug: str | None = Field(default=None, max_length=1000)


class CredentialBody(BaseModel):
    credential: dict[str, Any]
    name: str | None = Field(default=None, max_length=1000)


class KeyCreate(BaseModel):
    name: str = Field(max_length=1000)
    role: str = Field(max_length=50)
    agent_name: str | None = Field(default=None, max_length=1000)
    expires_at: datetime | None = None


# -- plumbing ------------------------------------------------------------------------------
def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _call(request: Request, function: str, *args: Any) -> Any:
    """One SQL function call, one transaction; PGRST errors become SignupError."""
    pool: ConnectionPool = request.app.state.pool
    placeholders = ", ".join(["%s"] * len(args))
    try:
        with pool.connection() as conn:
            row = conn.execute(f"select {function}({placeholders})", args).fetchone()
    except psycopg.Error as exc:
        raise _sql_error(exc) from None
    return row[0] if row else None


def _sql_error(exc: psycopg.Error) -> SignupError:
    diag = exc.diag
    if exc.sqlstate == "PGRST" and diag.message_primary:
        try:
            body = json.loads(diag.message_primary)
            detail = json.loads(diag.message_detail or "{}")
            return SignupError(int(detail.get("status", 400)), body["code"], body["message"],
                               body.get("details"), detail.get("headers") or {})
        except (ValueError, KeyError, TypeError):
            pass
    if exc.sqlstate and exc.sqlstate.startswith(("22", "23")):
        return SignupError(422, "invalid_input", diag.message_primary or "invalid input")
    raise exc


def _client_addr(request: Request) -> str:
    """The socket peer, or, behind a configured reverse proxy, the address that proxy saw
    (the last X-Forwarded-For entry: the one the trusted proxy appended)."""
    peer = request.client.host if request.client else "unknown"
    trusted = {p.strip() for p in _settings(request).trusted_proxies.split(",") if p.strip()}
    forwarded = request.headers.get("x-forwarded-for", "")
    if peer in trusted and forwarded.strip():
        return forwarded.split(",")[-1].strip()[:100] or peer
    return peer


def _check_origin(request: Request, *, required: bool) -> None:
    """CSRF guard for browser calls: a present Origin must be ours; session calls need one."""
    origin = request.headers.get("origin")
    if origin is None and not required:
        return
    if origin is None or origin.rstrip("/") not in ceremony.expected_origins(_settings(request)):
        raise SignupError(403, "bad_origin", "this request did not come from the loopctl pages")


def _session(request: Request) -> str:
    _check_origin(request, required=request.method != "GET")
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignupError(401, "session_required", "sign in with your passkey first")
    return token


def _set_session_cookie(request: Request, response: Response, session: dict[str, Any]) -> None:
    secure = request.url.scheme == "https" or any(
        o.startswith("https://") for o in ceremony.expected_origins(_settings(request)))
    response.set_cookie(SESSION_COOKIE, session["token"], max_age=int(session["max_age"]),
                        path="/", httponly=True, secure=secure, samesite="strict")


def _page(name: str) -> Response:
    return Response((STATIC / name).read_text(encoding="utf-8"), media_type="text/html",
                    headers=PAGE_HEADERS)


def _refused(request: Request, challenge: bytes, exc: Exception) -> SignupError:
    # A failed ceremony burns its challenge, so a response cannot be retried or replayed.
    _call(request, "auth.burn_challenge", challenge)
    if isinstance(exc, SignupError):
        return exc
    return SignupError(400, "webauthn_refused", str(exc))


def next_steps(settings: Settings, raw_key: str) -> dict[str, str]:
    base = ceremony.expected_origins(settings)[0]
    curl = f'curl -s -H "Authorization: Bearer {raw_key}" {base}/api/v1/me'
    mcp = {"mcpServers": {"loopctl": {"type": "http", "url": f"{base}/mcp",
                                      "headers": {"Authorization": f"Bearer {raw_key}"}}}}
    return {"curl": curl, "mcp_json": json.dumps(mcp, indent=2)}


def handled(fn: Any) -> Any:
    """Turn SignupError into its JSON answer (routes stay linear)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SignupError as exc:
            return exc.response()
        except ceremony.CeremonyError as exc:
            return SignupError(400, "webauthn_refused", str(exc)).response()

    return wrapper


# -- pages ---------------------------------------------------------------------------------
@router.get("/signup")
def signup_page() -> Response:
    return _page("signup.html")


@router.get("/signin")
def signin_page() -> Response:
    return _page("signin.html")


@router.get("/keys")
def keys_page() -> Response:
    return _page("keys.html")


@router.get("/passkey/{asset}")
def asset(asset: str) -> Response:
    types = {"passkey.js": "text/javascript", "passkey.css": "text/css"}
    if asset not in types:
        return Response(status_code=404)
    return Response((STATIC / asset).read_text(encoding="utf-8"), media_type=types[asset],
                    headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})


# -- signup --------------------------------------------------------------------------------
@router.post("/signup/options")
@handled
def signup_options(request: Request, body: SignupBegin) -> Any:
    _check_origin(request, required=False)
    begun = _call(request, "auth.signup_begin", body.name, body.slug, body.email,
                  _client_addr(request))
    return {"publicKey": ceremony.registration_options(_settings(request), begun)}


@router.post("/signup/verify")
@handled
def signup_verify(request: Request, body: CredentialBody) -> Any:
    _check_origin(request, required=False)
    settings = _settings(request)
    challenge = ceremony.client_challenge(body.credential)
    try:
        new = ceremony.verify_registration(settings, body.credential, challenge)
        result = _call(request, "auth.signup_finish", challenge, new.credential_id,
                       new.public_key, new.sign_count, new.transports, new.aaguid, body.name,
                       _client_addr(request))
    except (ceremony.CeremonyError, SignupError) as exc:
        raise _refused(request, challenge, exc) from None
    session = result.pop("session")
    result["next_steps"] = next_steps(settings, result["api_key"]["raw_key"])
    response = JSONResponse(result, status_code=201, headers={"Cache-Control": "no-store"})
    _set_session_cookie(request, response, session)
    return response


# -- sign-in -------------------------------------------------------------------------------
@router.post("/signin/options")
@handled
def signin_options(request: Request, body: SigninBegin) -> Any:
    _check_origin(request, required=False)
    begun = _call(request, "auth.signin_begin", body.slug, _client_addr(request))
    return {"publicKey": ceremony.authentication_options(_settings(request), begun)}


@router.post("/signin/verify")
@handled
def signin_verify(request: Request, body: CredentialBody) -> Any:
    _check_origin(request, required=False)
    challenge = ceremony.client_challenge(body.credential)
    try:
        cred_id = ceremony.credential_id(body.credential)
        stored = _call(request, "auth.signin_credential", cred_id)
        new_count = ceremony.verify_authentication(
            _settings(request), body.credential, challenge, bytes.fromhex(stored["public_key"]))
        result = _call(request, "auth.signin_finish", challenge, cred_id, new_count,
                       _client_addr(request))
    except (ceremony.CeremonyError, SignupError) as exc:
        raise _refused(request, challenge, exc) from None
    session = result.pop("session")
    response = JSONResponse(result, headers={"Cache-Control": "no-store"})
    _set_session_cookie(request, response, session)
    return response


@router.post("/signout")
@handled
def signout(request: Request) -> Any:
    _check_origin(request, required=True)
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        _call(request, "auth.session_signout", token)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


# -- signed in: the tenant, its authenticators and keys ---------------------------------------
@router.get("/session")
@handled
def session_info(request: Request) -> Any:
    return _call(request, "auth.session_info", _session(request))


@router.get("/session/keys")
@handled
def list_keys(request: Request) -> Any:
    return _call(request, "auth.session_list_keys", _session(request))


@router.post("/session/keys")
@handled
def create_key(request: Request, body: KeyCreate) -> Any:
    key = _call(request, "auth.session_create_key", _session(request), body.name, body.role,
                body.agent_name, body.expires_at)
    return JSONResponse(key, status_code=201, headers={"Cache-Control": "no-store"})


@router.post("/session/keys/{key_id}/revoke")
@handled
def revoke_key(request: Request, key_id: UUID) -> Any:
    return _call(request, "auth.session_revoke_key", _session(request), key_id)


@router.post("/session/keys/{key_id}/rotate")
@handled
def rotate_key(request: Request, key_id: UUID) -> Any:
    key = _call(request, "auth.session_rotate_key", _session(request), key_id)
    return JSONResponse(key, status_code=201, headers={"Cache-Control": "no-store"})


@router.post("/session/authenticators/options")
@handled
def add_authenticator_options(request: Request) -> Any:
    begun = _call(request, "auth.add_authenticator_begin", _session(request),
                  _client_addr(request))
    return {"publicKey": ceremony.registration_options(_settings(request), begun)}


@router.post("/session/authenticators/verify")
@handled
def add_authenticator_verify(request: Request, body: CredentialBody) -> Any:
    token = _session(request)
    challenge = ceremony.client_challenge(body.credential)
    try:
        new = ceremony.verify_registration(_settings(request), body.credential, challenge)
        result = _call(request, "auth.add_authenticator_finish", token, challenge,
                       new.credential_id, new.public_key, new.sign_count, new.transports,
                       new.aaguid, body.name)
    except (ceremony.CeremonyError, SignupError) as exc:
        raise _refused(request, challenge, exc) from None
    return JSONResponse(result, status_code=201)


@router.post("/session/authenticators/{authenticator_id}/remove")
@handled
def remove_authenticator(request: Request, authenticator_id: UUID) -> Any:
    _call(request, "auth.remove_authenticator", _session(request), authenticator_id)
    return Response(status_code=204)
