"""Database errors -> HTTP, as PostgREST maps them.

`PGRST` errors carry their own body (MESSAGE) and status/headers (DETAIL). Every other
SQLSTATE gets PostgREST's status, the PostgREST body {code: SQLSTATE, message, details,
hint}, and, for the /api/v1 surface, a stable snake_case code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import psycopg


@dataclass
class HttpError(Exception):
    """An error response: PostgREST body, the /api/v1 code, status and extra headers."""

    status: int
    code: str
    message: str
    details: Any = None
    hint: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    pgrst_code: str | None = None  # the PostgREST body's code (SQLSTATE or PGRSTxxx)

    def postgrest_body(self) -> dict[str, Any]:
        return {"code": self.pgrst_code or self.code, "message": self.message,
                "details": self.details, "hint": self.hint}

    def api_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message,
                          "details": self.details, "hint": self.hint}}


# SQLSTATE (exact, then class) -> (status, /api/v1 code)
_EXACT: dict[str, tuple[int, str]] = {
    "23505": (409, "already_exists"),
    "23503": (409, "reference_conflict"),
    "23514": (400, "check_violation"),
    "23502": (400, "not_null_violation"),
    "23P01": (409, "exclusion_conflict"),
    "22P02": (400, "invalid_input"),
    "22023": (400, "invalid_parameter"),
    "25006": (405, "read_only_transaction"),
    "42883": (404, "function_not_found"),
    "42P01": (404, "relation_not_found"),
    "42501": (403, "permission_denied"),
    "42703": (400, "undefined_column"),
    "P0001": (400, "raise_exception"),
    "P0002": (404, "not_found"),
    "P0003": (400, "too_many_rows"),
    "40001": (409, "serialization_failure"),
    "40P01": (409, "deadlock_detected"),
    "54000": (413, "input_too_large"),
    "54001": (400, "statement_too_complex"),
    "57014": (503, "query_canceled"),
}
_CLASS: dict[str, tuple[int, str]] = {
    "08": (503, "database_unavailable"),
    "0L": (403, "invalid_grantor"),
    "0P": (403, "invalid_role"),
    "21": (400, "cardinality_violation"),
    "22": (400, "invalid_input"),
    "23": (400, "constraint_violation"),
    "28": (403, "invalid_authorization"),
    "2F": (400, "sql_routine_exception"),
    "39": (400, "external_routine_exception"),
    "42": (400, "invalid_statement"),
    "53": (503, "insufficient_resources"),
    "57": (503, "operator_intervention"),
}


def from_sqlstate(sqlstate: str, message: str, details: Any, hint: str | None, *,
                  anonymous: bool) -> HttpError:
    status, code = _EXACT.get(sqlstate) or _CLASS.get(sqlstate[:2]) or (500, "internal_error")
    if sqlstate == "42501" and anonymous:
        status, code = 401, "unauthenticated"
    return HttpError(status, code, message, details, hint, pgrst_code=sqlstate)


def from_pg_error(exc: psycopg.Error, *, anonymous: bool) -> HttpError:
    diag = exc.diag
    sqlstate = diag.sqlstate or ""
    if sqlstate == "PGRST":
        return _custom(diag.message_primary or "", diag.message_detail or "")
    if not sqlstate:  # connection lost, pool timeout, ...
        return HttpError(503, "database_unavailable", "the database is not reachable",
                         pgrst_code="PGRST000")
    return from_sqlstate(sqlstate, diag.message_primary or str(exc), diag.message_detail,
                         diag.message_hint, anonymous=anonymous)


def _custom(message: str, detail: str) -> HttpError:
    """raise sqlstate 'PGRST' using message = '{code,message,details,hint}',
    detail = '{status, headers}' (PostgREST's custom-error convention)."""
    try:
        body = json.loads(message)
        meta = json.loads(detail) if detail else {}
        status = int(meta.get("status", 400))
        headers = {str(k): str(v) for k, v in (meta.get("headers") or {}).items()}
    except (ValueError, TypeError, AttributeError):
        return HttpError(500, "invalid_custom_error",
                         "a PGRST error did not carry JSON message/detail",
                         pgrst_code="PGRST121")
    if not isinstance(body, dict):
        body = {"message": str(body)}
    code = str(body.get("code") or "error")
    return HttpError(status, code, str(body.get("message") or ""), body.get("details"),
                     body.get("hint"), headers, pgrst_code=code)


def from_body(status: int, body: Any) -> HttpError:
    """An error a function returned while committing (app.error_response + response.status)."""
    if not isinstance(body, dict):
        body = {"message": str(body)}
    code = str(body.get("code") or "error")
    return HttpError(status, code, str(body.get("message") or ""), body.get("details"),
                     body.get("hint"), pgrst_code=code)
