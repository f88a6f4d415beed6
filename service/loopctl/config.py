"""Service configuration, read from LOOPCTL_* environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOOPCTL_", extra="ignore")

    # External Postgres (superuser or owner URL used for migrations). Empty: embedded cluster.
    database_url: str = ""
    host: str = "127.0.0.1"
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

    def resolved_data_dir(self) -> Path:
        return self.data_dir if self.data_dir.is_absolute() else Path.cwd() / self.data_dir


def get_settings() -> Settings:
    return Settings()
