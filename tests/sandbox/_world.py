"""A small world for the sandbox service tests: departments with published datasets, an onboarded
enterprise with its SM2 key, an operator — and helpers to drive the HTTP API."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from catalog import demo_data, publish, samples, service
from gateway.db import unit_of_work
from gmcrypto.sm2 import PrivateKey
from sandbox import queries
from sandbox.runner import Limits, SandboxRunner

API = "/api/v1/sandbox"
POP = "510100-RK-0001"  # population: G3, conditional open and share, owned by 510100-GA
CERT = "510100-ZZ-0001"  # certificates: G3, conditional, owned by 510100-ZWFW
GEO = "510100-KJ-0001"  # points of interest: G2, unconditional open and share, owned by 510100-GH
CLOSED = "510100-RK-0009"  # a population copy that is neither opened nor shared (closed types)


@pytest.fixture(scope="session", autouse=True)
def sandbox_runner():
    """One warm worker for the whole session, used by the query service."""
    runner = SandboxRunner(Limits(timeout_s=5.0, memory_mb=256, threads=1, max_rows=5000))
    queries._RUNNER = runner
    yield runner
    queries.shutdown_runner()


@dataclass
class World:
    state: Any
    client: Any
    ga: Any  # population department
    zwfw: Any  # certificates department
    gh: Any  # geospatial department
    other: Any  # a department that asks to share
    operator: Any
    ent: Any  # enterprise principal
    ent_key: PrivateKey

    def post(self, who: Any, path: str, body: Any = None) -> Any:
        return self.client.post(API + path, json=body, headers=who.headers)

    def get(self, who: Any, path: str, **params: Any) -> Any:
        return self.client.get(API + path, params=params, headers=who.headers)


def register_and_publish(
    state: Any, who: Any, library: str, rows: int, tmp: Path, *, drop: tuple[str, ...] = (), **changes: Any
) -> str:
    body = demo_data.registration(library)
    if drop:  # e.g. the geospatial sample without its address column is G2, so it may be shared unconditionally
        changes["fields"] = [f for f in body.fields if f.name not in drop]
    if changes:
        body = body.model_copy(update=changes)
    with unit_of_work(state.engine) as s:
        service.register(s, actor=who.actor, data=body)
    path = tmp / f"{body.code}.csv"
    samples.generate(library, rows).frame.drop(columns=list(drop)).to_csv(path, index=False)
    publish.publish(
        lambda: unit_of_work(state.engine),
        actor=who.actor,
        code=body.code,
        upload=publish.Upload(path=path, fmt="csv"),
        data_dir=state.data_dir,
        keyring=state.keyring,
    )
    return body.code


@pytest.fixture
def world(state, client, make_principal, tmp_path) -> World:
    ga = make_principal("department", org="510100-GA")
    zwfw = make_principal("department", org="510100-ZWFW")
    gh = make_principal("department", org="510100-GH")
    other = make_principal("department", org="510100-WJW")
    operator = make_principal("operator", org="OPERATOR-1")
    register_and_publish(state, ga, "population", 300, tmp_path)
    register_and_publish(state, zwfw, "certificate", 200, tmp_path)
    register_and_publish(state, gh, "geospatial", 100, tmp_path, drop=("address",))
    register_and_publish(state, ga, "population", 50, tmp_path, code=CLOSED, open_type="closed", share_type="closed")
    key = PrivateKey.generate()
    r = client.post(
        f"{API}/enterprises",
        headers=operator.headers,
        json={
            "code": "ENT-DEMO",
            "name": "示例数据科技有限公司",
            "principal_name": "analyst",
            "sm2_public_key_pem": key.public_key().to_pem().decode(),
        },
    )
    assert r.status_code == 201, r.text
    from common.actor import Actor
    from tests.conftest import Who

    ent = Who(
        actor=Actor(principal=r.json()["principal"], role="enterprise", org="ENT-DEMO"),
        token=r.json()["token"],
    )
    return World(state, client, ga, zwfw, gh, other, operator, ent, key)


def apply(w: World, columns: dict[str, list[str]], *, days: int = 30) -> dict[str, Any]:
    r = w.post(
        w.ent,
        "/requests",
        {
            "columns": columns,
            "purpose": "district_statistics",
            "purpose_text": "人口按区县统计，用于公共服务规划",
            "duration_days": days,
            "intended_outputs": ["counts by district and gender"],
        },
    )
    assert r.status_code == 201, r.text
    return r.json()


def approve_all(w: World, req: dict[str, Any]) -> int:
    """Each owning department, then the operator; returns the grant id."""
    owners = {"510100-GA": w.ga, "510100-ZWFW": w.zwfw, "510100-GH": w.gh}
    for org in req["owners"]:
        r = w.post(owners[org], f"/requests/{req['id']}/decision", {"decision": "approve"})
        assert r.status_code == 200, r.text
    r = w.post(w.operator, f"/requests/{req['id']}/decision", {"decision": "approve", "reason": "ok"})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "active"
    return r.json()["grant_id"]
