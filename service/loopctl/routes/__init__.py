"""Route declarations for /api/v1, one module per area, each next to the SQL functions it
calls. A module exports ROUTES: list[loopctl.gateway.declare.Route]; every module of this
package is picked up (adding an area means adding a module, nothing else)."""

from __future__ import annotations

import importlib
import pkgutil

from loopctl.gateway.declare import Route


def all_routes() -> list[Route]:
    routes: list[Route] = []
    seen: dict[tuple[str, str], str] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for r in getattr(module, "ROUTES", []):
            for p in (r.path, *r.aliases):
                key = (r.method, p)
                if key in seen:
                    raise ValueError(f"{r.method} {p} is declared twice "
                                     f"({seen[key]} and {info.name})")
                seen[key] = info.name
            routes.append(r)
    return routes
