"""What the exposed schemas contain, read from the system catalog (PostgREST's schema
cache): functions with their input arguments, views with their columns. Every identifier
the gateway puts into SQL comes from here, never from the request."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from psycopg import AsyncConnection

FUNCTIONS_SQL = """
select n.nspname, p.proname, p.provolatile, p.proretset, p.pronargs, p.pronargdefaults,
       coalesce(p.proargnames, '{}'::text[]) as argnames,
       coalesce(p.proargmodes::text[], '{}'::text[]) as argmodes,
       array(select format_type(t, null) from unnest(p.proargtypes) t) as argtypes,
       format_type(p.prorettype, null) as rettype,
       rt.typtype = 'c' as returns_composite,
       obj_description(p.oid, 'pg_proc') as description
  from pg_proc p
  join pg_namespace n on n.oid = p.pronamespace
  join pg_type rt on rt.oid = p.prorettype
 where n.nspname = any(%(schemas)s) and p.prokind = 'f'
 order by n.nspname, p.proname, p.pronargs
"""

RELATIONS_SQL = """
select n.nspname, c.relname, c.relkind::text,
       array_agg(a.attname::text order by a.attnum) as columns,
       array_agg(format_type(a.atttypid, a.atttypmod) order by a.attnum) as types
  from pg_class c
  join pg_namespace n on n.oid = c.relnamespace
  join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
 where n.nspname = any(%(schemas)s) and c.relkind in ('v', 'm', 'r', 'p', 'f')
 group by n.nspname, c.relname, c.relkind
"""


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Arg:
    name: str
    type: str
    required: bool


@dataclass(frozen=True)
class Function:
    schema: str
    name: str
    args: tuple[Arg, ...]
    volatility: str  # 'i' | 's' | 'v'
    returns_set: bool
    returns_composite: bool
    return_type: str
    description: str | None = None

    @property
    def qualified(self) -> str:
        return f"{quote_ident(self.schema)}.{quote_ident(self.name)}"

    @property
    def read_only(self) -> bool:
        return self.volatility in ("i", "s")

    def arg(self, name: str) -> Arg | None:
        return next((a for a in self.args if a.name == name), None)


@dataclass(frozen=True)
class Relation:
    schema: str
    name: str
    kind: str
    columns: dict[str, str]  # name -> type

    @property
    def qualified(self) -> str:
        return f"{quote_ident(self.schema)}.{quote_ident(self.name)}"


@dataclass
class Catalog:
    schemas: tuple[str, ...]
    functions: dict[tuple[str, str], list[Function]] = field(default_factory=dict)
    relations: dict[tuple[str, str], Relation] = field(default_factory=dict)
    loaded_at: float = 0.0

    async def load(self, conn: AsyncConnection[Any]) -> None:
        functions: dict[tuple[str, str], list[Function]] = {}
        relations: dict[tuple[str, str], Relation] = {}
        async with conn.cursor() as cur:
            await cur.execute(FUNCTIONS_SQL, {"schemas": list(self.schemas)})
            for row in await cur.fetchall():
                (schema, name, volatility, retset, nargs, ndefaults, argnames, argmodes,
                 argtypes, rettype, composite, description) = row
                in_names = [n for i, n in enumerate(argnames)
                            if not argmodes or argmodes[i] in ("i", "b")]
                names = (in_names + [""] * nargs)[:nargs]
                args = tuple(Arg(names[i], argtypes[i], i < nargs - ndefaults)
                             for i in range(nargs))
                functions.setdefault((schema, name), []).append(Function(
                    schema, name, args, volatility, retset, bool(composite), rettype,
                    description))
            await cur.execute(RELATIONS_SQL, {"schemas": list(self.schemas)})
            for schema, name, kind, columns, types in await cur.fetchall():
                relations[(schema, name)] = Relation(schema, name, kind,
                                                     dict(zip(columns, types, strict=True)))
        self.functions, self.relations = functions, relations
        self.loaded_at = time.monotonic()

    def function(self, schema: str, name: str, arg_names: set[str] | None = None
                 ) -> Function | None:
        """The overload whose named arguments fit `arg_names` (PostgREST's rule)."""
        candidates = self.functions.get((schema, name), [])
        if arg_names is None:
            return candidates[0] if candidates else None
        for fn in candidates:
            names = {a.name for a in fn.args}
            required = {a.name for a in fn.args if a.required}
            if arg_names <= names and required <= arg_names:
                return fn
        return None

    def relation(self, schema: str, name: str) -> Relation | None:
        return self.relations.get((schema, name))
