"""Published articles as an Obsidian vault (SPEC §9): a ZIP of `{category}/{slug}.md` with
YAML front matter and a `## Related Articles` section, plus `_index.md`.

Links are written `[[slug|Title]]`: Obsidian resolves the target by file name (slugs are
unique per tenant) and shows the title; front matter also lists the title as an alias.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

import yaml


def _wikilink(slug: str, title: str) -> str:
    # '|', '[' and ']' would end the link early; titles are display text only.
    safe = title.replace("|", "-").replace("[", "(").replace("]", ")")
    return f"[[{slug}|{safe}]]"


def article_markdown(article: dict[str, Any]) -> str:
    front = {
        "title": article["title"],
        "aliases": [article["title"]],
        "id": str(article["id"]),
        "category": article["category"],
        "tags": list(article.get("tags") or []),
        "status": article["status"],
        "source": article["source"],
        "project_id": str(article["project_id"]) if article.get("project_id") else None,
        "created": str(article["created_at"]),
        "updated": str(article["updated_at"]),
        "published": str(article["published_at"]) if article.get("published_at") else None,
    }
    related = article.get("related") or []
    lines = ["---", yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(), "---",
             "", f"# {article['title']}", "", article["body"].rstrip(), "",
             "## Related Articles", ""]
    if related:
        lines += [f"- {_wikilink(r['slug'], r['title'])} ({r['link_type'].replace('_', ' ')})"
                  for r in related]
    else:
        lines.append("_None yet._")
    return "\n".join(lines) + "\n"


def index_markdown(articles: list[dict[str, Any]]) -> str:
    lines = ["---", "title: Knowledge index", "---", "", "# Knowledge index", "",
             f"{len(articles)} published articles.", ""]
    for category in sorted({a["category"] for a in articles}):
        lines += [f"## {category.capitalize()}", ""]
        lines += [f"- {_wikilink(a['slug'], a['title'])}"
                  for a in sorted(articles, key=lambda a: a["title"].lower())
                  if a["category"] == category]
        lines.append("")
    return "\n".join(lines)


def build_vault(articles: list[dict[str, Any]]) -> bytes:
    """The ZIP bytes; `articles` is api.knowledge_export()'s "articles" list."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for a in articles:
            zf.writestr(f"{a['category']}/{a['slug']}.md", article_markdown(a))
        zf.writestr("_index.md", index_markdown(articles))
    return buf.getvalue()
