"""Settings refuse what would be unsafe outside development, with a message that says what to set."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.settings import Settings

GOOD_SECRET = "k" * 40


def test_development_defaults_are_local_and_embedded():
    s = Settings(env="development")
    assert s.host == "127.0.0.1" and s.port == 8000
    assert s.db_url.startswith("sqlite:///") and s.db_url.endswith("var/gateway.db")


def test_production_without_secret_is_refused():
    with pytest.raises(ValidationError, match="PDG_SECRET_KEY"):
        Settings(env="production")


@pytest.mark.parametrize("secret", ["changeme", "secret", "short"])
def test_production_with_placeholder_or_short_secret_is_refused(secret):
    with pytest.raises(ValidationError, match="PDG_SECRET_KEY"):
        Settings(env="production", secret_key=secret)


def test_public_bind_needs_declared_tls_termination():
    with pytest.raises(ValidationError, match="PDG_TLS_TERMINATED"):
        Settings(env="production", secret_key=GOOD_SECRET, host="0.0.0.0")
    ok = Settings(env="production", secret_key=GOOD_SECRET, host="0.0.0.0", tls_terminated=True)
    assert ok.host == "0.0.0.0"


def test_environment_prefix_and_database_url_alias(monkeypatch):
    monkeypatch.setenv("PDG_PORT", "9001")
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1/test")
    monkeypatch.setenv("PDG_LIMITS__PAGE_SIZE_MAX", "50")
    s = Settings()
    assert s.port == 9001 and s.db_url.startswith("postgresql://") and s.limits.page_size_max == 50


def test_secret_is_not_in_repr():
    assert GOOD_SECRET not in repr(Settings(env="production", secret_key=GOOD_SECRET))


def test_concurrent_first_starts_agree_on_one_generated_secret(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from gateway.state import load_secret_key

    s = Settings(env="development", data_dir=tmp_path / "var", keys_dir=tmp_path / "keys")
    with ThreadPoolExecutor(16) as pool:
        secrets = set(pool.map(lambda _: load_secret_key(s), range(32)))
    assert len(secrets) == 1 and len(next(iter(secrets))) == 44
    assert [p.name for p in (tmp_path / "keys").iterdir()] == ["secret.key"]
