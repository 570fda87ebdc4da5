"""Crash consistency: kill -9 a real `pdg serve` during a publish, an export, a checkpoint and a burst of
audited requests; restart; the previous state is intact, no orphan file, no half-visible version, and the
audit log exports, verifies offline and has no gap. Runs on SQLite, and on PostgreSQL with PDG_TEST_DB.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from catalog import samples
from tests.conftest import Who
from tests.reliability._invariants import check_audit, check_files, export_and_verify, snapshot
from tests.reliability._server import Server
from tests.reliability._world import database, populate, settings_for

POP = "510100-RK-0001"  # population, owned by 510100-GA (the world's department principal)
GEO = "510100-KJ-0001"  # points of interest: opened unconditionally
API = "/api/v1"


@dataclass
class Site:
    server: Server
    who: dict[str, Who | None]
    tmp: Path

    @property
    def db_url(self) -> str:
        return self.server.db_url

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, timeout=60.0)

    def headers(self, role: str) -> dict[str, str]:
        w = self.who[role]
        return w.headers if w is not None else {}

    def consistent(self) -> Any:
        """The invariants after a restart; returns the snapshot they held on."""
        snap = snapshot(self.db_url)
        check_files(self.server.data_dir, snap)
        check_audit(snap)
        out = self.tmp / f"audit-{uuid.uuid4().hex[:6]}.zip"
        assert export_and_verify(self.server.env, out).startswith("OK")
        return snapshot(self.db_url)  # the export signed a checkpoint (audited)


@pytest.fixture(scope="module")
def site(db_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    from gateway.state import build_state

    tmp = tmp_path_factory.mktemp("crash")
    with database(db_template, tmp) as url:
        settings = settings_for(tmp, url)
        state = build_state(settings)
        who, _ = populate(state)
        state.engine.dispose()
        server = Server(settings.data_dir, url, settings.keys_path)
        server.start()
        try:
            yield Site(server, who, tmp)
        finally:
            server.stop()


def _wait_for(predicate: Any, what: str, *, timeout: float = 60.0, unless: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if unless is not None and unless():
            pytest.fail(f"the request finished before {what}: make the work larger")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def _in_background(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["response"] = fn()
        except httpx.HTTPError as exc:  # the server died under the request: expected
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def _live_rows(site: Site, code: str) -> int:
    with site.client() as c:
        r = c.get(f"{API}/catalog/datasets/{code}", headers=site.headers("department"))
        assert r.status_code == 200, r.text
        return int(r.json()["current_version"])


def test_kill_during_publishes(site: Site) -> None:
    """One upload stalled half-way, another being prepared in staging: kill -9, restart."""
    before = snapshot(site.db_url)
    arrived, release = threading.Event(), threading.Event()
    head = samples.write(samples.generate("population", 2000), site.tmp / "head.csv").read_bytes()
    big = samples.write(samples.generate("population", 60_000), site.tmp / "big.csv").read_bytes()

    def stalling() -> Iterator[bytes]:
        for i in range(0, len(head), 16384):
            yield head[i : i + 16384]
            if i >= 65536:
                arrived.set()
                release.wait(30)  # a client that stalls mid-upload

    url = f"{API}/catalog/datasets/{POP}/versions"
    headers = {**site.headers("department"), "content-type": "text/csv"}
    slow, _ = _in_background(lambda: site.client().post(url, content=stalling(), headers=headers))
    uploads, staging = site.server.data_dir / "uploads", site.server.data_dir / "staging"
    _wait_for(lambda: arrived.is_set() and any(p.stat().st_size for p in uploads.glob("*")), "a partial upload")
    whole, out = _in_background(lambda: site.client().post(url, content=big, headers=headers))
    _wait_for(lambda: any(staging.glob("*/version")), "a version in staging", unless=lambda: "response" in out)

    site.server.restart_after_kill()
    release.set()
    slow.join(30)
    whole.join(30)
    after = site.consistent()
    assert after.versions == before.versions and after.current == before.current
    with site.client() as c:  # the previous version is still the live one, and serves
        r = c.get(f"{API}/catalog/datasets/{POP}", headers=site.headers("department"))
        assert r.status_code == 200 and r.json()["current_version"] == before.current[POP], r.text
        assert c.get(f"{API}/open/datasets/{GEO}/rows", params={"_size": "5"}).status_code == 200


def _approved_query(site: Site) -> int:
    """An onboarded enterprise with an approved grant on POP and a released aggregate query; its id."""
    from gmcrypto.sm2 import PrivateKey

    with site.client() as c:
        op, dept = site.headers("operator"), site.headers("department")
        code = f"ENT-{uuid.uuid4().hex[:6].upper()}"
        key = PrivateKey.generate().public_key().to_pem().decode()
        r = c.post(
            f"{API}/sandbox/enterprises",
            headers=op,
            json={"code": code, "name": "崩溃测试企业", "principal_name": "analyst", "sm2_public_key_pem": key},
        )
        assert r.status_code == 201, r.text
        ent = {"Authorization": f"Bearer {r.json()['token']}"}
        r = c.post(
            f"{API}/sandbox/requests",
            headers=ent,
            json={
                "columns": {POP: ["gender"]},
                "purpose": "district_statistics",
                "purpose_text": "人口按性别统计，用于公共服务规划",
                "duration_days": 30,
                "intended_outputs": ["counts by gender"],
            },
        )
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        assert c.post(f"{API}/sandbox/requests/{rid}/decision", headers=dept, json={"decision": "approve"}).is_success
        r = c.post(f"{API}/sandbox/requests/{rid}/decision", headers=op, json={"decision": "approve", "reason": "ok"})
        assert r.status_code == 200, r.text
        sql = "select gender, count(*) as n from population group by gender"
        r = c.post(f"{API}/sandbox/workspaces/{r.json()['grant_id']}/queries", headers=ent, json={"sql": sql})
        assert r.status_code == 201 and r.json()["decision"] == "released", r.text
        site.who["_ent"] = Who(actor=None, token=ent["Authorization"].split()[1])  # type: ignore[arg-type]
        return int(r.json()["id"])


def test_kill_during_exports_checkpoints_and_a_burst(site: Site) -> None:
    """Audited reads from 12 clients, checkpoints being signed and exports being sealed: kill -9, restart."""
    query_id = _approved_query(site)
    before = snapshot(site.db_url)
    acked: list[str] = []
    lock, stop = threading.Lock(), threading.Event()
    requests = [
        ("GET", f"{API}/open/datasets/{GEO}/rows", {"_size": "20"}, "public"),
        ("GET", f"{API}/catalog/datasets/{POP}", {}, "enterprise"),
        ("GET", f"{API}/audit/events", {}, "auditor"),
        ("POST", f"{API}/audit/checkpoints", {}, "auditor"),
    ]

    def worker(i: int) -> None:
        method, path, params, role = requests[i % len(requests)]
        with site.client() as c:
            while not stop.is_set():
                rid = f"burst-{uuid.uuid4().hex}"
                try:
                    r = c.request(method, path, params=params, headers={**site.headers(role), "X-Request-ID": rid})
                except httpx.HTTPError:
                    return
                if r.is_success:
                    with lock:
                        acked.append(rid)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(12)]
    for t in threads:
        t.start()
    _wait_for(lambda: len(acked) >= 100, "a hundred acknowledged requests")
    exports = site.server.data_dir / "exports"
    seen = set(exports.glob("*")) if exports.exists() else set()
    url = f"{API}/sandbox/queries/{query_id}/export"
    sealing = [
        _in_background(lambda: site.client().post(url, json={"format": "csv"}, headers=site.headers("_ent")))
        for _ in range(4)
    ]
    _wait_for(lambda: bool(set(exports.glob("*")) - seen), "an export package being written")

    site.server.kill()
    stop.set()
    for t in threads:
        t.join(30)
    for t, _ in sealing:
        t.join(30)
    site.server.start()
    after = site.consistent()
    logged = _logged_request_ids(site.db_url)
    missing = [rid for rid in acked if rid not in logged]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged requests are not in the audit log"
    done = [o["response"].json()["id"] for _, o in sealing if "response" in o and o["response"].status_code == 201]
    assert len(after.exports) >= len(before.exports) + len(done)  # nothing acknowledged is lost
    with site.client() as c:  # every acknowledged export downloads whole (or waits for its review)
        for export_id in done:
            assert c.get(f"{API}/sandbox/exports/{export_id}", headers=site.headers("_ent")).status_code in (200, 409)
        assert c.get(f"{API}/audit/checkpoints", headers=site.headers("auditor")).status_code == 200


def _logged_request_ids(db_url: str) -> set[str]:
    from sqlalchemy import text

    from gateway.db import make_engine

    engine = make_engine(db_url, pool_size=1)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT request_id FROM audit_record WHERE request_id LIKE 'burst-%'"))
            return {r[0] for r in rows}
    finally:
        engine.dispose()
