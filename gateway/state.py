"""What a running gateway holds: settings, the database engine, keys, the policy engine, limiters."""

from __future__ import annotations

import base64
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from gateway.db import make_engine
from gateway.ratelimit import RateLimiter
from gateway.settings import Settings
from gateway.slots import SANDBOX_THREADS


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    keyring: Any
    policy_engine: Any
    secret_key: bytes
    limiter: RateLimiter = field(default_factory=RateLimiter)

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir


def load_keyring(settings: Settings) -> Any:
    """The gateway's SM2 signing key and KEK: from env (Kubernetes Secrets) or the keys directory."""
    from gmcrypto.keys import Keyring

    if settings.signing_key_pem is not None and settings.kek is not None:
        return Keyring.from_pem(
            settings.signing_key_pem.get_secret_value().encode(), settings.kek.get_secret_value()
        )
    return Keyring.load_or_create(settings.keys_path)


def load_secret_key(settings: Settings) -> bytes:
    """Session/cursor secret: PDG_SECRET_KEY, or (development) one generated once into the keys dir."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    path = settings.keys_path / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secret-")
        try:
            os.write(fd, base64.b64encode(secrets.token_bytes(32)))
            os.fchmod(fd, 0o600)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # atomic and exclusive: concurrent first starts agree on one secret
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return path.read_bytes().strip()


def install_decision_point(settings: Settings, engine: Engine) -> Any:
    """Load the policy files into the process's decision point and let it learn the scenario in force."""
    from datarange.scenarios import install as install_range
    from policies.engine import Engine as PolicyEngine
    from policies.engine import set_engine

    policy_engine = PolicyEngine.load(settings.policies_dir) if settings.policies_dir else PolicyEngine.load()
    set_engine(policy_engine)
    install_range(engine)  # decisions carry the scenario switched on in this database (datarange/scenarios.py)
    return policy_engine


def build_state(settings: Settings, *, engine: Engine | None = None) -> AppState:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # One connection per handler thread, sandbox thread and the audit committer (reads hold theirs per request).
    engine = engine or make_engine(settings.db_url, max_connections=settings.threads + SANDBOX_THREADS + 2)
    return AppState(
        settings=settings,
        engine=engine,
        policy_engine=install_decision_point(settings, engine),
        keyring=load_keyring(settings),
        secret_key=load_secret_key(settings),
        limiter=RateLimiter(),
    )
