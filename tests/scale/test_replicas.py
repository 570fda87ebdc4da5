"""Three gateway replicas on one PostgreSQL, one data directory and one keys directory, driven at once.

Publishes of one dataset, downloads, a sandbox flow (request, competing approvals, queries, an export)
and audited actions are spread over the replicas concurrently; then one replica is SIGKILLed under load
and the other two carry on. Afterwards: every version numbered 1..N exactly once with its files and row
counts, nothing half-written or orphaned on disk, one grant per approved request, and the audit log one
gap-free chain that exports and verifies with the gateway's public key.
"""

from __future__ import annotations

import io
import itertools
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine, text

from catalog import demo_data, samples
from gmcrypto.keys import Keyring
from gmcrypto.package import verify_package
from gmcrypto.sm2 import PrivateKey
from tests.scale.cluster import Cluster, auth

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(300)]

POP, GEO = "510100-RK-0001", "510100-KJ-0001"
PUBLISHES = 6  # concurrent versions of GEO, on top of its first
GEO_ROWS = [40 + 7 * i for i in range(PUBLISHES + 2)]  # distinct sizes: a version's rows name its upload
BY_DISTRICT = (
    "select household_address_code as district, gender, count(*) as people "
    "from population group by household_address_code, gender"
)


def _csv(library: str, rows: int, seed: int, drop: tuple[str, ...] = ()) -> bytes:
    return samples.generate(library, rows, seed=seed).frame.drop(columns=list(drop)).to_csv(index=False).encode()


def _register(http: httpx.Client, url: str, token: str, library: str, drop: tuple[str, ...] = ()) -> str:
    body = demo_data.registration(library)
    if drop:  # the geospatial sample without addresses is G2: opened unconditionally, so downloadable
        body = body.model_copy(update={"fields": [f for f in body.fields if f.name not in drop]})
    r = http.post(f"{url}/api/v1/catalog/datasets", json=body.model_dump(mode="json"), headers=auth(token))
    assert r.status_code == 201, r.text
    return body.code


def _publish(http: httpx.Client, url: str, token: str, code: str, data: bytes) -> httpx.Response:
    return http.post(
        f"{url}/api/v1/catalog/datasets/{code}/versions",
        content=data,
        headers={**auth(token), "Content-Type": "text/csv"},
    )


def _query(http: httpx.Client, url: str, grant: int, token: str) -> httpx.Response:
    return http.post(f"{url}/api/v1/sandbox/workspaces/{grant}/queries", json={"sql": BY_DISTRICT}, headers=auth(token))


def _admin_setup(c: Cluster, http: httpx.Client, admin: str) -> dict[str, str]:
    """After the first admin (made with the CLI, as docs/deploy.md says), the rest by it over HTTP, spread out."""
    orgs = [
        ("510100-GA", "department", "department"),
        ("510100-GH", "department", "department"),
        ("OPERATOR-1", "operator", "operator"),
        ("AUDIT-1", "audit_office", "auditor"),
    ]
    urls = itertools.cycle(c.urls)

    def make(org: tuple[str, str, str]) -> str:
        code, kind, role = org
        r = http.post(
            f"{next(urls)}/api/v1/admin/organisations",
            json={"code": code, "name": f"测试{code}", "kind": kind},
            headers=auth(admin),
        )
        assert r.status_code == 201, r.text
        r = http.post(
            f"{next(urls)}/api/v1/admin/principals",
            json={"org": code, "role": role, "name": f"{role} of {code}"},
            headers=auth(admin),
        )
        assert r.status_code == 201, r.text
        return str(r.json()["token"])

    with ThreadPoolExecutor(4) as pool:
        ga, gh, op, aud = pool.map(make, orgs)
    return {"admin": admin, "ga": ga, "gh": gh, "op": op, "aud": aud}


def _race(http: httpx.Client, calls: list[tuple[str, str, dict[str, Any], str]]) -> list[httpx.Response]:
    """The same kind of POST sent to several replicas at the same moment."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda a: http.post(a[0] + a[1], json=a[2], headers=auth(a[3])), calls))


def test_three_replicas_stay_consistent(cluster: Cluster, tmp_path: Path) -> None:
    c = cluster
    t0 = time.monotonic()
    phases: dict[str, float] = {}

    def phase(name: str) -> None:  # wall-clock figures for the report; never asserted
        phases[name] = round(time.monotonic() - t0 - sum(phases.values()), 1)

    A, B, C = c.launch(3)  # concurrent start-up: each migrates (serialised) and loads the shared keys
    with ThreadPoolExecutor(1) as pool:  # the first admin (CLI) while the replicas finish starting
        admin = pool.submit(lambda: (c.wait_migrated(), c.make_principal("admin", "ADMIN-1", "admin"))[1])
        c.wait_ready([A, B, C])
        phase("start 3 replicas")
        http = httpx.Client(timeout=90, limits=httpx.Limits(max_connections=32))
        t = _admin_setup(c, http, admin.result())
    phase("principals (CLI + API)")

    # --- the world: two datasets, a first version of each, an onboarded enterprise -------------------
    assert _register(http, A, t["ga"], "population") == POP
    assert _register(http, B, t["gh"], "geospatial", drop=("address",)) == GEO
    assert _publish(http, C, t["ga"], POP, _csv("population", 300, 1)).status_code == 201  # G3: sealed at rest
    first = _publish(http, A, t["gh"], GEO, _csv("geospatial", GEO_ROWS[0], 100, ("address",)))
    assert first.status_code == 201 and first.json()["number"] == 1, first.text
    ent_key = PrivateKey.generate()
    r = http.post(
        f"{B}/api/v1/sandbox/enterprises",
        json={
            "code": "ENT-1",
            "name": "示例数据科技有限公司",
            "principal_name": "analyst",
            "sm2_public_key_pem": ent_key.public_key().to_pem().decode(),
        },
        headers=auth(t["op"]),
    )
    assert r.status_code == 201, r.text
    ent = r.json()["token"]

    # --- a request whose approvals race on different replicas ---------------------------------------
    body = {
        "columns": {POP: ["gender", "household_address_code"]},
        "purpose": "district_statistics",
        "purpose_text": "人口按区县统计，用于公共服务规划",
        "duration_days": 30,
        "intended_outputs": ["counts by district and gender"],
    }
    r = http.post(f"{C}/api/v1/sandbox/requests", json=body, headers=auth(ent))
    assert r.status_code == 201, r.text
    req = r.json()["id"]
    path = f"/api/v1/sandbox/requests/{req}/decision"
    dept = _race(http, [(u, path, {"decision": "approve"}, t["ga"]) for u in (A, B)])
    assert sorted(x.status_code for x in dept) == [200, 409], [x.text for x in dept]
    ops = _race(http, [(u, path, {"decision": "approve", "reason": "ok"}, t["op"]) for u in (A, B, C)])
    assert sorted(x.status_code for x in ops) == [200, 409, 409], [x.text for x in ops]
    grant = next(x.json() for x in ops if x.status_code == 200)["grant_id"]

    phase("world and approvals")
    # --- everything at once, round-robin over the replicas ------------------------------------------
    uploads = [_csv("geospatial", n, 100 + i, ("address",)) for i, n in enumerate(GEO_ROWS[1:-1], 1)]
    urls = itertools.cycle([A, B, C])
    gh, aud = t["gh"], t["aud"]
    jobs: list[tuple[str, Callable[[], httpx.Response]]] = []
    for data in uploads:
        jobs.append(("publish", partial(_publish, http, next(urls), gh, GEO, data)))
    for i in range(9):
        fmt = ("csv", "parquet", "ndjson")[i % 3]
        jobs.append(("download", partial(http.get, f"{next(urls)}/api/v1/open/datasets/{GEO}/download.{fmt}")))
    for _ in range(6):
        jobs.append(("query", partial(_query, http, next(urls), grant, ent)))
    for _ in range(3):
        jobs.append(("checkpoint", partial(http.post, f"{next(urls)}/api/v1/audit/checkpoints", headers=auth(aud))))
        jobs.append(("search", partial(http.get, f"{next(urls)}/api/v1/audit/events", headers=auth(aud))))
        jobs.append(("denied", partial(_publish, http, next(urls), ent, GEO, b"x,y\n1,2\n")))
    with ThreadPoolExecutor(12) as pool:
        done = list(zip([k for k, _ in jobs], pool.map(lambda j: j[1](), jobs), strict=True))

    phase(f"concurrent phase ({len(jobs)} requests)")
    by_kind: dict[str, list[httpx.Response]] = {}
    for kind, resp in done:
        by_kind.setdefault(kind, []).append(resp)
    bad = [(k, x.status_code, x.text[:300]) for k, x in done if (x.status_code >= 300) != (k == "denied")]
    assert not bad, bad
    assert all(x.status_code == 403 for x in by_kind["denied"])

    # --- versions: 1..N, each exactly once, each with the rows of the upload that made it -------------
    numbers = sorted(x.json()["number"] for x in by_kind["publish"])
    assert numbers == list(range(2, PUBLISHES + 2)), numbers
    listed = http.get(f"{B}/api/v1/catalog/datasets/{GEO}/versions").json()
    assert sorted(v["number"] for v in listed) == list(range(1, PUBLISHES + 2))
    rows_of = {v["number"]: v["rows"] for v in listed}
    assert sorted(rows_of.values()) == sorted(GEO_ROWS[:-1])
    for x in by_kind["publish"]:
        assert rows_of[x.json()["number"]] == x.json()["rows"]
    assert http.get(f"{C}/api/v1/catalog/datasets/{GEO}").json()["current_version"] == PUBLISHES + 1

    # --- downloads were whole editions of some version, never a mixture or a prefix -------------------
    for x in by_kind["download"]:
        ctype = x.headers["content-type"]
        if "parquet" in ctype:
            n = pq.read_table(io.BytesIO(x.content)).num_rows
        elif "csv" in ctype:
            n = len(x.content.decode("utf-8-sig").strip().splitlines()) - 1
        else:
            n = len(x.content.decode().strip().splitlines())
        assert n in GEO_ROWS, (ctype, n)

    # --- sandbox: every query saw the same sealed data; an export made and fetched on other replicas --
    results = [x.json() for x in by_kind["query"]]
    assert {q["decision"] for q in results} == {"released"} and {q["rows_scanned"] for q in results} == {300}
    # The same rows whichever replica ran it (GROUP BY leaves the order to DuckDB's threads: compare sets).
    distinct = {json.dumps(sorted(q["result"]["rows"]), ensure_ascii=False) for q in results}
    assert len(distinct) == 1, distinct
    e = http.post(f"{A}/api/v1/sandbox/queries/{results[0]['id']}/export", json={"format": "csv"}, headers=auth(ent))
    assert e.status_code == 201, e.text
    if e.json()["state"] == "pending_review":
        review = {"decision": "release", "reason": "aggregates only"}
        rel = http.post(f"{B}/api/v1/sandbox/exports/{e.json()['id']}/review", json=review, headers=auth(t["op"]))
        assert rel.status_code == 200, rel.text
    pkg = http.get(f"{C}/api/v1/sandbox/exports/{e.json()['id']}", headers=auth(ent))
    assert pkg.status_code == 200, pkg.text
    keyring = Keyring.load(c.keys_dir)
    verify_package(io.BytesIO(pkg.content), keyring.public_keys.values())  # signed with the shared key

    # --- a keyset cursor from one replica continues on the others (one shared secret) ---------------
    seen = 0
    link: str | None = f"{A}/api/v1/open/datasets/{GEO}/rows?_size=30"
    for base in itertools.cycle([B, C, A]):
        if link is None:
            break
        page = http.get(link)
        assert page.status_code == 200, page.text
        seen += len(page.json()["data"])
        nxt = page.json()["links"]["next"]
        link = None if nxt is None else base + nxt[nxt.index("/api/") :]
    assert seen == rows_of[PUBLISHES + 1]

    phase("checks over HTTP")

    # --- a replica dies mid-work (SIGKILL: no clean-up, maybe inside an audit append); the others go on --
    stop = threading.Event()

    def hammer(url: str) -> int:
        """Audited reads until told to stop or the replica is gone; returns how many succeeded."""
        ok = 0
        for _ in range(5000):
            if stop.is_set():
                break
            try:
                ok += http.get(f"{url}/api/v1/open/datasets/{GEO}/rows?_size=20").status_code == 200
            except httpx.TransportError:
                break
        return ok

    with ThreadPoolExecutor(6) as pool:
        doomed = [pool.submit(hammer, C) for _ in range(4)]
        survivors = [pool.submit(hammer, u) for u in (A, B)]
        time.sleep(1.0)
        c.kill(C)
        last = _publish(http, A, gh, GEO, _csv("geospatial", GEO_ROWS[-1], 999, ("address",)))
        stop.set()
    assert sum(f.result() for f in doomed) > 0 and all(f.result() > 0 for f in survivors)
    assert last.status_code == 201 and last.json()["number"] == PUBLISHES + 2, last.text
    listed = http.get(f"{B}/api/v1/catalog/datasets/{GEO}/versions").json()
    assert sorted(v["number"] for v in listed) == list(range(1, PUBLISHES + 3))
    assert sorted(v["rows"] for v in listed) == sorted(GEO_ROWS) and last.json()["rows"] == GEO_ROWS[-1]
    phase("kill a replica under load")

    _check_database_and_disk(c, req, grant, listed)
    phase("database and disk")
    _check_audit_chain(c, tmp_path, keyring)
    phase("audit export + verify (CLI)")
    print("phases (s):", phases)
    http.close()


def _check_database_and_disk(c: Cluster, req: int, grant: int, listed: list[dict[str, Any]]) -> None:
    engine = create_engine(c.db_url)
    with engine.connect() as conn:
        grants = conn.execute(text("SELECT id, request_id FROM sandbox_grant")).all()
        assert [(g.id, g.request_id) for g in grants] == [(grant, req)]  # one approved request, one grant
        state = conn.execute(text("SELECT state FROM sandbox_request WHERE id = :r"), {"r": req}).scalar_one()
        assert state == "active"
        versions = conn.execute(
            text(
                "SELECT d.code, v.number, v.rows, v.open_rows, v.encrypted FROM catalog_version v "
                "JOIN catalog_dataset d ON d.id = v.dataset_id ORDER BY d.code, v.number"
            )
        ).all()
        export_paths = {p for (p,) in conn.execute(text("SELECT path FROM sandbox_export WHERE path IS NOT NULL"))}
    engine.dispose()
    assert [(v.number, v.rows) for v in versions if v.code == GEO] == sorted((x["number"], x["rows"]) for x in listed)
    root = c.data_dir / "datasets"
    for v in versions:
        vdir = root / v.code / f"v{v.number}"
        raw = vdir / ("data.parquet.sm4" if v.encrypted else "data.parquet")
        assert raw.is_file(), raw
        if not v.encrypted:
            assert pq.ParquetFile(raw).metadata.num_rows == v.rows
        if v.open_rows is not None:
            assert pq.ParquetFile(vdir / "open.parquet").metadata.num_rows == v.open_rows == v.rows
    on_disk = {(d.name, p.name) for d in root.iterdir() for p in d.iterdir()}
    assert on_disk == {(v.code, f"v{v.number}") for v in versions}  # no orphan version directory
    for leftovers in ("staging", "uploads"):
        assert not list((c.data_dir / leftovers).glob("*")), f"{leftovers} not empty"
    exports = {f"exports/{p.name}" for p in (c.data_dir / "exports").iterdir()}
    assert exports == export_paths  # no temp or unreferenced package


def _check_audit_chain(c: Cluster, tmp_path: Path, keyring: Keyring) -> None:
    engine = create_engine(c.db_url)
    with engine.connect() as conn:
        n, lo, hi = conn.execute(text("SELECT count(*), min(seq), max(seq) FROM audit_record")).one()
        published = conn.execute(
            text("SELECT count(*) FROM audit_record WHERE action = 'dataset:publish' AND allowed AND dataset = :d"),
            {"d": GEO},
        ).scalar_one()
        sizes = [s for (s,) in conn.execute(text("SELECT tree_size FROM audit_checkpoint ORDER BY id"))]
    engine.dispose()
    assert (lo, hi) == (1, n)  # seq 1..n without a gap
    assert published == PUBLISHES + 2  # one record per version that went live, none for a lost one
    assert len(sizes) >= 3 and sizes == sorted(sizes)  # checkpoints from every replica, one growing tree
    pub = tmp_path / "gateway.pub.pem"
    pub.write_bytes(keyring.public_key.to_pem())
    out = tmp_path / "audit.zip"
    c.cli("audit", "export", "--out", str(out))
    verified = c.cli("audit", "verify", str(out), "--public-key", str(pub), check=False)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("OK: ") and int(verified.stdout.split()[1]) >= n, verified.stdout
