"""Who is calling: `Authorization: Bearer lc_…` (an API key) or `Bearer <JWT>` (minted by
POST /api/v1/auth/token, HS256 with postgrest.conf's jwt-secret). Either way the gateway
passes only the key's SHA-256 to SQL, which decides (auth.authenticate_request)."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import jwt

from loopctl.gateway.errors import HttpError
from loopctl.gateway.executor import Caller

TOKEN_TTL_DEFAULT = 900
TOKEN_TTL_MAX = 3600


def _unauthorized(code: str, message: str) -> HttpError:
    return HttpError(401, code, message, hint="send Authorization: Bearer lc_... with a valid key",
                     headers={"WWW-Authenticate": "Bearer"}, pgrst_code=code)


def caller_from_header(authorization: str | None, jwt_secret: str) -> Caller:
    if not authorization:
        return Caller()
    scheme, _, credential = authorization.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise _unauthorized("invalid_authorization", "expected Authorization: Bearer <key>")
    if credential.startswith("lc_"):
        return Caller(hashlib.sha256(credential.encode()).hexdigest())
    if credential.count(".") == 2 and jwt_secret:
        try:
            claims = jwt.decode(credential, jwt_secret, algorithms=["HS256"],
                                options={"require": ["exp", "key_hash"]})
        except jwt.ExpiredSignatureError:
            raise _unauthorized("token_expired", "the token has expired") from None
        except jwt.PyJWTError:
            raise _unauthorized("invalid_token", "the token is not valid") from None
        key_hash = claims.get("key_hash")
        if not isinstance(key_hash, str) or len(key_hash) != 64:
            raise _unauthorized("invalid_token", "the token carries no key")
        return Caller(key_hash)
    raise _unauthorized("invalid_api_key", "the API key is not valid")


def mint_token(claims: dict[str, Any], jwt_secret: str, ttl: int) -> dict[str, Any]:
    """A PostgREST-compatible HS256 JWT with the claims SQL reads (role, key_hash, …)."""
    now = int(time.time())
    payload = {k: v for k, v in claims.items() if k != "error"} | {
        "iat": now, "exp": now + ttl}
    token = jwt.encode(payload, jwt_secret, algorithm="HS256")
    return {"token": token, "token_type": "Bearer", "expires_in": ttl,
            "expires_at": payload["exp"], "role": claims.get("role")}
