"""Rules for the image definition that matter to us, beyond what hadolint checks."""

from __future__ import annotations

import re

from tests.k8s.manifests import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
IGNORE = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_bases_are_slim_bookworm_python_311_and_never_latest() -> None:
    bases = [args.split()[0] for word, args in _instructions() if word == "FROM"]
    assert len(bases) >= 2, "multi-stage build expected"
    for base in bases:
        assert base.startswith("python:3.11") and "slim-bookworm" in base, base
        assert ":latest" not in base


def test_runs_as_the_fixed_non_root_user() -> None:
    users = [args for word, args in _instructions() if word == "USER"]
    assert users and users[-1] == "10001:10001"
    assert "--uid 10001" in DOCKERFILE


def test_installs_from_the_lock_file_with_a_pinned_uv() -> None:
    runs = " ".join(args for word, args in _instructions() if word == "RUN")
    assert re.search(r"pip install [^&]*uv==\d+\.\d+\.\d+", runs)
    syncs = re.findall(r"uv sync[^&;]*", runs)
    assert syncs and all("--frozen" in s and "--no-dev" in s for s in syncs)
    assert "pip install -r" not in runs and "uv pip install" not in runs


def test_healthcheck_hits_health_without_curl() -> None:
    checks = [args for word, args in _instructions() if word == "HEALTHCHECK"]
    assert len(checks) == 1 and "/health" in checks[0] and "python" in checks[0]
    commands = " ".join(args for _, args in _instructions())
    assert "curl" not in commands and "wget" not in commands


def test_no_remote_add_and_no_secrets_in_layers() -> None:
    for word, args in _instructions():
        assert not (word == "ADD" and re.search(r"https?://|git@", args)), args
        if word in ("ENV", "ARG"):
            names = re.findall(r"([A-Z_][A-Z0-9_]*)=", args) or [args.split("=")[0]]
            for name in names:
                assert not re.search(r"SECRET|PASSWORD|TOKEN|KEK$|PRIVATE|DATABASE_URL", name), name


def test_entrypoint_is_pdg_and_data_dir_is_a_volume() -> None:
    instructions = dict(_instructions())
    assert instructions["ENTRYPOINT"] == '["pdg"]'
    assert instructions["CMD"] == '["serve"]'
    assert "PDG_DATA_DIR=/var/lib/pdg/data" in DOCKERFILE
    assert "/var/lib/pdg/data" in instructions["VOLUME"]


def test_dockerignore_keeps_local_state_and_keys_out() -> None:
    for pattern in (".git", ".venv", "var", "tests", "**/*.pem", "**/*.key", ".env"):
        assert pattern in IGNORE, pattern
