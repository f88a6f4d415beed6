"""SQL text for one function call with named arguments, PostgREST's way: the arguments
travel as one JSON literal and json_to_record casts each to the parameter's catalog type
(a malformed value is a 22P02 -> 400, never an injection)."""

from __future__ import annotations

import json
from typing import Any

from loopctl.gateway.catalog import Function, quote_ident
from loopctl.gateway.executor import quote_literal


def function_call(fn: Function, args: dict[str, Any]) -> str:
    named = ", ".join(f"{quote_ident(n)} => _a.{quote_ident(n)}" for n in args)
    source = ""
    if args:
        columns = ", ".join(f"{quote_ident(n)} {_arg_type(fn, n)}" for n in args)
        payload = quote_literal(json.dumps(args, separators=(",", ":")))
        source = f" from json_to_record({payload}::json) as _a({columns})"
    call = f"{fn.qualified}({named})"
    if fn.returns_set:
        joined = f"{source}, lateral {call} _r" if source else f" from {call} _r"
        return f"select coalesce(json_agg(_r), '[]')::text{joined}"
    if fn.returns_composite:
        joined = f"{source}, lateral {call} _r" if source else f" from {call} _r"
        return f"select to_json(_r)::text{joined}"
    if fn.return_type == "void":
        return f"select {call}::text{source}"
    return f"select to_json({call})::text{source}"


def _arg_type(fn: Function, name: str) -> str:
    arg = fn.arg(name)
    assert arg is not None, name
    return arg.type
