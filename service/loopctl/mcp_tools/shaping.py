"""Turning API responses into small tool results: find the list, keep the first page."""

from __future__ import annotations

from typing import Any

LIST_CAP = 20
# Keys under which a function returns its list when it wraps it in an object.
LIST_KEYS = ("articles", "results", "items", "jobs", "entries", "history", "routes")


def unwrap(payload: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(rows, meta) of a response: a bare list, a {data, meta} envelope, or an object
    holding its list under one of LIST_KEYS (its other fields join meta)."""
    meta: dict[str, Any] = {}
    for _ in range(3):
        if isinstance(payload, list):
            return [r for r in payload if isinstance(r, dict)], meta
        if not isinstance(payload, dict):
            break
        if "meta" in payload or "data" in payload:
            meta = {**(payload.get("meta") or {}),
                    **{k: v for k, v in payload.items() if k not in ("data", "meta")}, **meta}
            payload = payload.get("data")
            continue
        key = next((k for k in LIST_KEYS if isinstance(payload.get(k), list)), None)
        if key is None:
            break
        meta = {**{k: v for k, v in payload.items() if k != key}, **meta}
        payload = payload[key]
    return [], meta


def first_page(payload: Any) -> tuple[list[dict[str, Any]], bool]:
    """(first LIST_CAP rows, has_more)."""
    rows, meta = unwrap(payload)
    return rows[:LIST_CAP], bool(meta.get("has_more")) or len(rows) > LIST_CAP


def short(row: dict[str, Any], limit: int = 200) -> dict[str, Any]:
    """Drop nested values and cut long text so list results stay small."""
    return {k: (v[:limit] + "…" if isinstance(v, str) and len(v) > limit else v)
            for k, v in row.items() if not isinstance(v, dict | list) or k == "next_actions"}
