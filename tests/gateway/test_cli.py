"""The `pdg` CLI: the same services as HTTP, clear messages and exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.settings import get_settings

runner = CliRunner()


@pytest.fixture
def cli_env(settings, monkeypatch):
    monkeypatch.setenv("PDG_DATABASE_URL", settings.db_url)
    monkeypatch.setenv("PDG_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("PDG_KEYS_DIR", str(settings.keys_path))
    monkeypatch.setenv("PDG_ENV", "test")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_principal_create_prints_a_token_that_authenticates(cli_env, client):
    assert (
        runner.invoke(
            app,
            [
                "admin",
                "organisation",
                "create",
                "--code",
                "510100-GA",
                "--name",
                "成都市公安局",
                "--kind",
                "department",
            ],
        ).exit_code
        == 0
    )
    result = runner.invoke(
        app, ["admin", "principal", "create", "--role", "department", "--org", "510100-GA", "--name", "张三"]
    )
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[-1]
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["role"] == "department" and me.json()["org"] == "510100-GA"


def test_principal_create_in_unknown_org_fails_clearly(cli_env):
    result = runner.invoke(
        app, ["admin", "principal", "create", "--role", "department", "--org", "NOPE", "--name", "x"]
    )
    assert result.exit_code == 1
    assert "no organisation with code 'NOPE'" in result.output


def test_role_must_fit_the_organisation(cli_env):
    created = runner.invoke(
        app, ["admin", "organisation", "create", "--code", "E-1", "--name", "企业", "--kind", "enterprise"]
    )
    assert created.exit_code == 0, created.output
    result = runner.invoke(
        app, ["admin", "principal", "create", "--role", "auditor", "--org", "E-1", "--name", "x"]
    )
    assert result.exit_code == 1 and "audit_office" in result.output


def test_db_upgrade_is_idempotent(cli_env):
    first = runner.invoke(app, ["db", "upgrade"])
    second = runner.invoke(app, ["db", "upgrade"])
    assert first.exit_code == 0 and second.exit_code == 0
    assert "database at" in second.output


def test_unsafe_settings_give_a_message_and_exit_2(monkeypatch):
    monkeypatch.setenv("PDG_ENV", "production")
    monkeypatch.delenv("PDG_SECRET_KEY", raising=False)
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["db", "current"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2 and "PDG_SECRET_KEY" in result.output


def test_help_everywhere():
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "run" in out.stdout and "serve" in out.stdout
    for args in (
        ["admin", "--help"],
        ["admin", "principal", "create", "--help"],
        ["db", "--help"],
        ["serve", "--help"],
        ["run", "--help"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
