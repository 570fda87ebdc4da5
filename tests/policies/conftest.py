"""Fixtures for the policies tests: a writable copy of the packaged policy directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from policies.vocabulary import POLICY_DIR


def copy_policies(dest: Path) -> Path:
    """Copy only the policy files (not the Python modules) into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("vocabulary.yaml", "schema.cedarschema", "access.cedar"):
        shutil.copy(POLICY_DIR / name, dest / name)
    (dest / "scenarios").mkdir(exist_ok=True)
    for p in (POLICY_DIR / "scenarios").glob("*.yaml"):
        shutil.copy(p, dest / "scenarios" / p.name)
    return dest


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    return copy_policies(tmp_path / "policies")
