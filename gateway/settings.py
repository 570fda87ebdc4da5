"""Settings, built once at start from the environment (prefix PDG_). Nothing below gateway/ reads the environment."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Values copied from examples or left as placeholders; refused outside development.
_KNOWN_DEFAULT_SECRETS = {"", "changeme", "change-me", "changethis", "secret", "password", "default", "dev"}


class UnsafeSettings(ValueError):
    """Settings that would be unsafe outside development; the message says what to set."""


class Limits(BaseSettings):
    """Request and resource limits; override with PDG_LIMITS__NAME=value."""

    model_config = SettingsConfigDict(env_prefix="PDG_LIMITS__")

    max_upload_bytes: int = 2 * 1024**3
    max_json_bytes: int = 1 * 1024**2
    max_header_bytes: int = 16 * 1024
    page_size_default: int = 100
    page_size_max: int = 1000
    anonymous_per_minute: int = 600
    token_per_minute: int = 6000
    auth_failures_per_minute: int = 20
    sandbox_query_seconds: float = 10.0
    sandbox_memory_mb: int = 1024
    sandbox_row_cap: int = 10_000


class Settings(BaseSettings):
    """Everything the gateway reads from its environment. See README, section Settings."""

    model_config = SettingsConfigDict(env_prefix="PDG_", env_nested_delimiter="__", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path("var")
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("PDG_DATABASE_URL", "DATABASE_URL")
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=2, ge=1, le=64)
    # Threads per worker process for blocking handlers. More threads than this only queue on the GIL and
    # on the database's write lock; waiting requests cost nothing in the event loop.
    threads: int = Field(default=24, ge=4, le=400)
    # Start a sandbox worker process with each gateway worker (else on the first query). A cold start
    # imports DuckDB and pyarrow in a fresh process: seconds the first query should not wait.
    sandbox_warm: bool = True
    keys_dir: Path | None = None
    policies_dir: Path | None = None
    # Declares that a reverse proxy / Ingress terminates TLS in front of a non-loopback bind.
    tls_terminated: bool = False
    # Secret for session cookies and cursor signing; generated into the keys dir in development.
    secret_key: SecretStr | None = None
    # Kubernetes Secrets may hand keys over as env values instead of files.
    signing_key_pem: SecretStr | None = None
    kek: SecretStr | None = None
    checkpoint_interval_seconds: int = Field(default=300, ge=5)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    limits: Limits = Field(default_factory=Limits)

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'gateway.db').resolve()}"

    @property
    def keys_path(self) -> Path:
        return self.keys_dir or self.data_dir / "keys"

    @property
    def is_development(self) -> bool:
        return self.env in ("development", "test")

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        if self.is_development:
            return self
        problems = []
        if self.secret_key is None or self.secret_key.get_secret_value().lower() in _KNOWN_DEFAULT_SECRETS:
            problems.append("set PDG_SECRET_KEY to a random value of at least 32 characters")
        elif len(self.secret_key.get_secret_value()) < 32:
            problems.append("PDG_SECRET_KEY must be at least 32 characters")
        if not _is_loopback(self.host) and not self.tls_terminated:
            problems.append(
                f"PDG_HOST={self.host} is not loopback: terminate TLS in front of it and set PDG_TLS_TERMINATED=true"
            )
        if self.kek is not None and self.kek.get_secret_value().lower() in _KNOWN_DEFAULT_SECRETS:
            problems.append("PDG_KEK is a placeholder: create one with `openssl rand -base64 16`")
        if problems:
            raise UnsafeSettings(f"refusing to start with PDG_ENV={self.env}: " + "; ".join(problems))
        return self


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings (cached; tests build their own Settings and pass them to create_app)."""
    return Settings()
