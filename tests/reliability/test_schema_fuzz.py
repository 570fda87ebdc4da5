"""Schemathesis against the app's own OpenAPI document: every operation, as every role.

Checks: no 5xx; the status, content type and body of every response are the ones the document declares
(problem+json for every 4xx). Bounded: a few examples per operation and role, in process (ASGI).
"""

from __future__ import annotations

import os
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.reliability._world import ROLES, World

OPENAPI = "/api/v1/openapi.json"
EXAMPLES = int(os.environ.get("PDG_FUZZ_EXAMPLES", "2"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _operations() -> list[str]:
    """Every operation label in the document, read from an app built on a scratch directory."""
    from gateway.app import create_app
    from gateway.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(env="test", data_dir=Path(tmp) / "var", keys_dir=Path(tmp) / "keys", sandbox_warm=False)
        doc = create_app(settings).openapi()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return [f"{m.upper()} {p}" for p, item in doc["paths"].items() for m in item if m != "parameters"]


OPERATIONS = _operations()


@cache
def _schema(app: Any) -> Any:
    return schemathesis.openapi.from_asgi(OPENAPI, app)


def test_document_covers_the_api() -> None:
    """The fuzzing reaches every public part of the API (a router dropped from the document would hide it)."""
    prefixes = {"/api/v1/catalog", "/api/v1/open", "/api/v1/sandbox", "/api/v1/audit", "/api/v1/admin"}
    assert prefixes <= {"/".join(op.split(" ")[1].split("/")[:4]) for op in OPERATIONS}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("label", OPERATIONS)
def test_operation(world: World, label: str, role: str) -> None:
    method, path = label.split(" ", 1)
    operation = _schema(world.app)[path][method]
    headers = world.headers(role)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,  # the same cases every run: CI failures reproduce
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def fuzz(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    fuzz()
