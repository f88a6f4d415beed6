"""Review findings / pasted text -> draft articles (title, body, category, tags).

Without an LLM configured the deterministic extractor does the work: it splits findings,
derives titles from their first sentence, classifies the category by cue words, takes tags
from code identifiers, paths and a domain vocabulary, and drops duplicates. With
LOOPCTL_LLM_URL set, an OpenAI-compatible or Anthropic endpoint does it instead.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

CATEGORIES = ("pattern", "convention", "decision", "finding", "reference")


@dataclass
class Draft:
    title: str
    body: str
    category: str
    tags: list[str] = field(default_factory=list)


class Extractor(Protocol):
    def extract(self, source: dict[str, Any]) -> list[Draft]: ...


# Cue words per category, scored on the finding text (stems matched at word starts).
_CUES: dict[str, tuple[str, ...]] = {
    "decision": ("decided", "decide", "decision", "we chose", "chose", "choose", "opted",
                 "instead of", "trade-off", "tradeoff", "adopt", "went with", "rather than",
                 "in favour of", "in favor of"),
    "convention": ("always", "never", "must", "should", "naming", "convention", "prefer",
                   "consistent", "style", "do not", "don't", "require", "rule"),
    "pattern": ("pattern", "approach", "idiom", "helper", "reusable", "technique", "recipe",
                "use a", "wrap", "extract a", "factor out", "strategy"),
    "reference": ("see ", "docs", "documentation", "reference", "http://", "https://",
                  "spec", "rfc", "manual", "link", "guide"),
    "finding": ("bug", "fails", "failed", "failure", "missing", "error", "race", "leak",
                "crash", "broken", "incorrect", "wrong", "regression", "vulnerab", "n+1",
                "slow", "deadlock", "not handled", "unhandled", "flaky"),
}

_VOCABULARY = (
    "security", "performance", "testing", "tests", "migration", "concurrency", "database",
    "sql", "postgres", "api", "http", "auth", "authentication", "authorization", "cache",
    "caching", "logging", "validation", "error-handling", "transactions", "locking", "index",
    "indexes", "rls", "webhooks", "retry", "timeout", "pagination", "json", "async", "docker",
    "ci", "deployment", "config", "typing", "refactoring", "documentation", "accessibility",
)
_IDENT = re.compile(
    r"`([^`]{2,60})`"                                     # `code`
    r"|(?<![\w/])((?:[\w.-]+/)+[\w.-]+\.[A-Za-z0-9]+)\b"      # paths/with/file.ext
    r"|\b([A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_.]*)\b"  # dotted.names / files.py
    r"|\b([a-z]+_[a-z0-9_]+)\b"                           # snake_case
    r"|\b([a-z]+[A-Z][A-Za-z0-9]+)\b"                     # camelCase
)
_TAG_OK = re.compile(r"^[a-z0-9][a-z0-9._/+#-]{0,49}$")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_LEAD_LABEL = re.compile(r"^(?:finding|issue|note|nit|fix(?:ed)?|problem|observation)\s*[:\-–]\s*",
                         re.IGNORECASE)


def classify(text: str) -> str:
    low = " " + text.lower() + " "
    scores = {c: sum(low.count(cue) for cue in cues) for c, cues in _CUES.items()}
    best = max(CATEGORIES, key=lambda c: (scores[c], c == "finding"))
    return best if scores[best] > 0 else "finding"


def extract_tags(text: str, limit: int = 8) -> list[str]:
    tags: list[str] = []
    for m in _IDENT.finditer(text):
        raw = next(g for g in m.groups() if g)
        tag = re.sub(r"[^a-z0-9._/+#-]+", "-", raw.strip().lower()).strip("-.")
        if _TAG_OK.match(tag) and tag not in tags:
            tags.append(tag)
    low = text.lower()
    for word in _VOCABULARY:
        if re.search(rf"\b{re.escape(word)}\b", low) and word not in tags:
            tags.append(word)
    return tags[:limit]


def derive_title(text: str, max_len: int = 90) -> str:
    first = _LEAD_LABEL.sub("", _BULLET.sub("", text.strip().splitlines()[0].strip()))
    first = first.lstrip("#").strip()
    sentence = _SENTENCE_END.split(first, maxsplit=1)[0].strip().rstrip(".:;!")
    if len(sentence) > max_len:
        cut = sentence[:max_len].rsplit(" ", 1)[0]
        sentence = cut.rstrip(",;:-") + "…"
    return sentence[:1].upper() + sentence[1:]


def _finding_text(item: Any) -> str:
    """A finding may be a string or an object such as {title, description, file, severity}."""
    if isinstance(item, str):
        return item.strip()
    if isinstance(item, dict):
        parts = [str(item[k]).strip() for k in ("title", "description", "detail", "details",
                                                "message", "text", "recommendation")
                 if isinstance(item.get(k), str) and item[k].strip()]
        where = item.get("file") or item.get("path")
        if where:
            parts.append(f"Location: `{where}`")
        return "\n\n".join(parts)
    return ""


def split_text(text: str) -> list[str]:
    """Markdown sections (## headings) or bullet items or paragraphs, in that order."""
    if re.search(r"^#{1,3}\s+\S", text, re.MULTILINE):
        chunks = re.split(r"(?m)^(?=#{1,3}\s+\S)", text)
        return [c.strip() for c in chunks if c.strip()]
    lines = text.strip().splitlines()
    bullets = [i for i, ln in enumerate(lines) if _BULLET.match(ln)]
    if len(bullets) >= 2:
        items: list[str] = []
        for n, start in enumerate(bullets):
            end = bullets[n + 1] if n + 1 < len(bullets) else len(lines)
            items.append("\n".join(lines[start:end]).strip())
        return items
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def _meaningful(text: str) -> bool:
    return len(re.findall(r"[A-Za-z]{3,}", text)) >= 4


class DeterministicExtractor:
    """No model: rules over the review text. Honest but literal."""

    def extract(self, source: dict[str, Any]) -> list[Draft]:
        if source.get("kind") == "ingest":
            return self._from_ingest(source)
        return self._from_review(source)

    def _from_review(self, src: dict[str, Any]) -> list[Draft]:
        findings = src.get("findings") or []
        texts = [_finding_text(f) for f in findings] if isinstance(findings, list) else []
        texts = [t for t in texts if t]
        if not texts and src.get("summary"):
            texts = split_text(str(src["summary"]))
        story = f"{src.get('story_number', '')} {src.get('story_title', '')}".strip()
        footer = (f"\n\n---\nExtracted from the {src.get('review_type', 'review')} review of "
                  f"story {story} (review `{src.get('review_id')}`).")
        return self._drafts(texts, footer)

    def _from_ingest(self, src: dict[str, Any]) -> list[Draft]:
        text = str(src["text"])
        if src.get("title"):
            return self._drafts([text], "", title=str(src["title"]),
                                category=src.get("category"), tags=src.get("tags"))
        return self._drafts(split_text(text), "", category=src.get("category"),
                            tags=src.get("tags"))

    def _drafts(self, texts: list[str], footer: str, *, title: str | None = None,
                category: str | None = None, tags: list[str] | None = None) -> list[Draft]:
        drafts: list[Draft] = []
        seen: set[str] = set()
        for text in texts:
            if not _meaningful(text):
                continue
            t = title or derive_title(text)
            key = re.sub(r"\W+", " ", t.lower()).strip()
            if not key or key in seen:
                continue
            seen.add(key)
            body = _BULLET.sub("", text, count=1).strip()
            drafts.append(Draft(
                title=t, body=body + footer,
                category=category if category in CATEGORIES else classify(text),
                tags=[*(tags or []), *extract_tags(text)][:12]))
        return drafts


# -- LLM extractor ---------------------------------------------------------------------------
_PROMPT = (
    "Turn the following code-review findings (or notes) into reusable knowledge-base "
    "articles for a software team. Return only JSON: a list of objects with keys title "
    "(≤90 chars), body (Markdown), category (one of pattern, convention, decision, finding, "
    "reference) and tags (≤8 lowercase keywords). Skip trivia; merge duplicates.\n\n")


class LlmExtractor:
    """OpenAI-compatible chat completions or Anthropic messages. Not exercised by the test
    suite (no network here); failures raise so the job is retried with backoff."""

    def __init__(self, url: str, model: str, api_key: str = "", provider: str = "openai",
                 timeout: float = 60) -> None:
        self.url, self.model, self.api_key, self.provider = url, model, api_key, provider
        self.timeout = timeout

    def _source_text(self, src: dict[str, Any]) -> str:
        if src.get("kind") == "ingest":
            return str(src["text"])
        findings = "\n".join(f"- {_finding_text(f)}" for f in src.get("findings") or [])
        return f"Summary: {src.get('summary') or ''}\nFindings:\n{findings}"

    def extract(self, source: dict[str, Any]) -> list[Draft]:
        prompt = _PROMPT + self._source_text(source)[:50000]
        if self.provider == "anthropic":
            resp = httpx.post(self.url, timeout=self.timeout, json={
                "model": self.model, "max_tokens": 4000,
                "messages": [{"role": "user", "content": prompt}]},
                headers={"x-api-key": self.api_key, "anthropic-version": "2023-06-01"})
            resp.raise_for_status()
            text = "".join(b.get("text", "") for b in resp.json()["content"])
        else:
            resp = httpx.post(self.url, timeout=self.timeout, json={
                "model": self.model, "messages": [{"role": "user", "content": prompt}]},
                headers={"Authorization": f"Bearer {self.api_key}"} if self.api_key else {})
            resp.raise_for_status()
            text = resp.json()["choices"][0]["message"]["content"]
        return parse_llm_drafts(text)


def parse_llm_drafts(text: str) -> list[Draft]:
    start, end = text.find("["), text.rfind("]")
    if start < 0 or end < start:
        raise ValueError("LLM answer holds no JSON list")
    drafts = []
    for item in json.loads(text[start:end + 1]):
        if not isinstance(item, dict) or not item.get("title") or not item.get("body"):
            continue
        category = item.get("category") if item.get("category") in CATEGORIES else "finding"
        tags = [str(t).lower() for t in item.get("tags") or [] if _TAG_OK.match(str(t).lower())]
        drafts.append(Draft(str(item["title"])[:300], str(item["body"]), category, tags[:8]))
    return drafts


def make_extractor(llm_url: str = "", llm_model: str = "", llm_api_key: str = "",
                   llm_provider: str = "openai") -> Extractor:
    if llm_url:
        return LlmExtractor(llm_url, llm_model, llm_api_key, llm_provider)
    return DeterministicExtractor()
