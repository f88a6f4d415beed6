"""Service configuration, read from LOOPCTL_* environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class ConfigError(ValueError):
    """A configuration value is unusable; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOOPCTL_", extra="ignore")

    # External Postgres (superuser or owner URL used for migrations). Empty: embedded cluster.
    database_url: str = ""
    host: str = "127.0.0.1"
    # One log line per request costs the gateway measurable throughput; a reverse proxy
    # usually keeps the access log. LOOPCTL_ACCESS_LOG=true turns uvicorn's back on.
    access_log: bool = False
    port: int = 8000
    # Embedded cluster: data lives here; relative paths are taken from the working directory.
    data_dir: Path = Path(".loopctl")
    embedded_pg_port: int = 54329
    # The sqitch project deployed by `loopctl migrate`.
    migrations_dir: Path = REPO_ROOT / "migrations"
    pool_min_size: int = 1
    pool_max_size: int = 10
    webauthn_rp_id: str = "localhost"
    webauthn_rp_name: str = "loopctl"
    webauthn_origin: str = "http://localhost:8000"
    # Reverse proxies (comma-separated IPs) whose X-Forwarded-For names the client for the
    # signup/sign-in rate limit; from anyone else the header is ignored (client-controlled).
    trusted_proxies: str = ""
    # The gateway connects as `authenticator` (empty: generated, see gateway/credentials.py).
    authenticator_password: str = ""

    # Webhook delivery and the background worker (`loopctl worker`; SPEC §10).
    # Seconds to wait before each retry, comma-separated: after the last one, exhausted.
    webhook_retry_schedule: str = "60,300,1500,7200,36000"
    webhook_retry_jitter: float = 0.2  # +/- this fraction of each step
    webhook_timeout_seconds: float = 10.0
    webhook_disable_after_exhausted: int = 3  # exhausted deliveries in a row disable an endpoint
    # Deliver to private, loopback and link-local addresses (development and tests only).
    webhooks_allow_private: bool = False
    worker_lease_seconds: float = 60.0  # a claimed delivery is retried if not reported by then
    worker_concurrency: int = 16  # deliveries in flight per worker process
    worker_poll_seconds: float = 10.0  # fallback wake-up; LISTEN/NOTIFY wakes the worker first
    worker_in_serve: bool = True  # `loopctl serve` on the embedded database runs a worker too

    # Knowledge wiki (SPEC §9). Embeddings: empty URL = the bundled all-MiniLM-L6-v2, served
    # by `loopctl serve` at /v1/embeddings (embeddings_serve) and used in-process by the
    # worker; a URL = any OpenAI-compatible embeddings endpoint serving embeddings_model.
    embeddings_url: str = ""
    embeddings_model: str = "all-MiniLM-L6-v2"
    embeddings_api_key: str = ""
    embeddings_serve: bool = True
    # Load the served model at startup (in the background) so the first semantic search
    # does not wait seconds for it and fall back to keyword; tests turn it off.
    embeddings_preload: bool = True
    # Extraction: empty = the deterministic extractor; else an OpenAI-compatible chat
    # completions URL or Anthropic messages URL (llm_provider = openai | anthropic).
    llm_url: str = ""
    llm_model: str = ""
    llm_api_key: str = ""
    llm_provider: str = "openai"
    knowledge_link_threshold: float = 0.6  # cosine similarity for automatic relates_to links

    def retry_schedule(self) -> list[float]:
        try:
            steps = [float(x) for x in self.webhook_retry_schedule.split(",") if x.strip()]
        except ValueError:
            steps = [-1.0]
        if any(step < 0 for step in steps):
            raise ConfigError("LOOPCTL_WEBHOOK_RETRY_SCHEDULE: comma-separated seconds >= 0, "
                              f"got {self.webhook_retry_schedule!r}")
        return steps

    def resolved_data_dir(self) -> Path:
        return self.data_dir if self.data_dir.is_absolute() else Path.cwd() / self.data_dir


def get_settings() -> Settings:
    return Settings()
