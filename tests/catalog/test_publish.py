"""Register and publish through the services and HTTP: grading, quality gates, atomic versions, audit."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlmodel import select

from catalog import demo_data, publish, samples, service, storage
from catalog.models import DatasetVersion
from common.errors import Denied, Invalid
from gateway.db import unit_of_work
from tests.conftest import audit_rows


@pytest.fixture
def dept(make_principal):
    return make_principal("department", org="510100-GA")


def _register(engine, who, library="population"):
    body = demo_data.registration(library)
    with unit_of_work(engine) as s:
        return service.register(s, actor=who.actor, data=body)


def _publish(state, who, code, path, **kw):
    return publish.publish(
        lambda: unit_of_work(state.engine),
        actor=who.actor,
        code=code,
        upload=publish.Upload(path=Path(path), **kw),
        data_dir=state.data_dir,
        keyring=state.keyring,
    )


def _records(engine, action):
    return audit_rows(engine, action=action)


def test_register_computes_grade_with_reasons(engine, dept):
    ds = _register(engine, dept)
    assert ds.grade == "G3"  # id numbers and names are personal information
    assert any("id_number" in r for r in ds.grade_reasons)
    assert ds.owner_org == "510100-GA"


def test_unconditional_sharing_of_personal_data_is_refused_at_registration(engine, dept):
    body = demo_data.registration("population").model_copy(
        update={"code": "510100-RK-0099", "share_type": "unconditional"}
    )
    with pytest.raises(Invalid, match="sharing allows at most G2"), unit_of_work(engine) as s:
        service.register(s, actor=dept.actor, data=body)


def test_enterprise_cannot_register_and_the_denial_is_audited(engine, make_principal):
    ent = make_principal("enterprise")
    with pytest.raises(Denied), unit_of_work(engine) as s:
        service.register(s, actor=ent.actor, data=demo_data.registration("legal_person"))
    denied = [r for r in _records(engine, "dataset:register") if not r.allowed]
    assert len(denied) == 1 and denied[0].principal == ent.actor.principal


def test_publish_g3_version_is_encrypted_at_rest_and_has_no_open_edition(state, dept, tmp_path):
    ds = _register(state.engine, dept)
    path = samples.write(samples.generate("population", 300), tmp_path / "p.csv")
    v = _publish(state, dept, ds.code, path)
    assert v.number == 1 and v.rows == 300 and v.encrypted
    vdir = storage.version_dir(state.data_dir, ds.code, 1)
    assert sorted(p.name for p in vdir.iterdir()) == [storage.RAW_SEALED]
    raw = (vdir / storage.RAW_SEALED).read_bytes()
    first_id = samples.generate("population", 300).frame.iloc[0]["person_id"]
    assert first_id.encode() not in raw and b"PAR1" not in raw[:8]
    plain = state.keyring.decrypt_file_to_bytes(
        vdir / storage.RAW_SEALED, aad=publish.at_rest_aad(ds.code, v.content_digest)
    )
    assert plain[:4] == b"PAR1"


def test_publish_open_dataset_derives_masked_open_edition(state, make_principal, tmp_path):
    who = make_principal("department", org="510100-SCJG")
    ds = _register(state.engine, who, "legal_person")
    sample = samples.generate("legal_person", 200)
    v = _publish(state, who, ds.code, samples.write(sample, tmp_path / "lp.csv"))
    assert v.encrypted and v.open_rows == 200  # raw holds legal representatives (G3); open edition is masked
    table = pq.read_table(storage.open_path(state.data_dir, ds.code, 1)).to_pandas()
    assert list(table["_row"]) == list(range(1, 201))
    reps = set(sample.frame["legal_representative"])
    for col in table.columns:
        assert not (set(table[col].astype(str)) & reps), f"{col} leaks a legal representative's name"


def test_the_row_store_is_built_after_the_version_is_live(state, make_principal, tmp_path):
    import time

    from catalog import reader

    who = make_principal("department", org="510100-SCJG")
    ds = _register(state.engine, who, "legal_person")
    v = _publish(state, who, ds.code, samples.write(samples.generate("legal_person", 300), tmp_path / "lp.csv"))
    path = storage.open_path(state.data_dir, ds.code, v.number)
    deadline = time.monotonic() + 30
    while not reader.is_ready(path):  # built off the publish path, by a background thread
        assert time.monotonic() < deadline
        time.sleep(0.02)
    vdir = storage.version_dir(state.data_dir, ds.code, v.number)
    assert not list(vdir.glob("*.tmp"))
    page = reader.read_rows(path, reader.RowQuery(limit=5, count=True), cursor_key=b"k" * 32, version="x")
    assert page.total == 300 and [r["uscc"] for r in page.data]


def test_gbk_upload_is_detected(state, dept, tmp_path):
    ds = _register(state.engine, dept)
    path = samples.write(samples.generate("population", 100), tmp_path / "gbk.csv", encoding="gbk")
    v = _publish(state, dept, ds.code, path)
    assert v.encoding == "gbk" and v.rows == 100


def test_failing_quality_is_refused_with_row_numbers_and_nothing_is_stored(state, dept, tmp_path):
    ds = _register(state.engine, dept)
    good = samples.write(samples.generate("population", 100), tmp_path / "good.csv")
    _publish(state, dept, ds.code, good)
    bad_sample = samples.generate("population", 200, defects=0.05)
    bad = samples.write(bad_sample, tmp_path / "bad.csv")
    with pytest.raises(Invalid) as err:
        _publish(state, dept, ds.code, bad)
    report = err.value.extra["report"]
    # Impossible dates already fail conformance (typed columns); bad check digits fail quality.
    rows_named = [r for p in report["conformance"]["problems"] for r in p["rows"]]
    if "quality" in report:
        rows_named += [f["row"] for c in report["quality"]["checks"] if not c["passed"] for f in c["samples"]]
    defective = {r for rows in bad_sample.defects.values() for r in rows}
    assert rows_named and set(rows_named) <= defective
    with unit_of_work(state.engine) as s:
        live = service.get(s, ds.code)
        assert live.current_version == 1
        assert len(s.exec(select(DatasetVersion).where(DatasetVersion.dataset_id == live.id)).all()) == 1
    assert sorted(p.name for p in (state.data_dir / "datasets" / ds.code).iterdir()) == ["v1"]
    assert not any((state.data_dir / "staging").iterdir())
    publishes = _records(state.engine, "dataset:publish")
    assert [r.outcome.get("error") for r in publishes] == [None, "invalid"]


def test_concurrent_publishes_get_distinct_versions(state, dept, tmp_path):
    ds = _register(state.engine, dept)
    paths = [
        samples.write(samples.generate("population", 150, seed=i), tmp_path / f"{i}.csv") for i in range(3)
    ]
    results, errors = [], []

    def run(p):
        try:
            results.append(_publish(state, dept, ds.code, p).number)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and sorted(results) == [1, 2, 3]
    with unit_of_work(state.engine) as s:
        assert service.get(s, ds.code).current_version == 3


def test_http_register_upload_and_quality(client, dept, tmp_path):
    body = demo_data.registration("population").model_dump(mode="json")
    resp = client.post("/api/v1/catalog/datasets", json=body, headers=dept.headers)
    assert resp.status_code == 201, resp.text
    assert resp.json()["grade"] == "G3"
    csv = samples.write(samples.generate("population", 120), tmp_path / "p.csv").read_bytes()
    up = client.post(
        f"/api/v1/catalog/datasets/{body['code']}/versions",
        content=csv,
        headers={**dept.headers, "content-type": "text/csv"},
    )
    assert up.status_code == 201, up.text
    assert up.json()["number"] == 1 and up.json()["rows"] == 120
    q = client.get(f"/api/v1/catalog/datasets/{body['code']}/versions/1/quality", headers=dept.headers)
    assert q.status_code == 200 and q.json()["quality"]["verdict"] == "accepted"
    listed = client.get(f"/api/v1/catalog/datasets/{body['code']}/versions", headers=dept.headers)
    assert [v["number"] for v in listed.json()] == [1]


def test_http_rejected_upload_is_422_with_report(client, dept):
    body = demo_data.registration("population").model_dump(mode="json")
    client.post("/api/v1/catalog/datasets", json=body, headers=dept.headers)
    resp = client.post(
        f"/api/v1/catalog/datasets/{body['code']}/versions",
        content=b"a,b\n1,2\n",
        headers={**dept.headers, "content-type": "text/csv"},
    )
    assert resp.status_code == 422
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["report"]["conformance"]["problems"]


def test_http_empty_and_wrong_type_uploads(client, dept):
    body = demo_data.registration("population").model_dump(mode="json")
    client.post("/api/v1/catalog/datasets", json=body, headers=dept.headers)
    url = f"/api/v1/catalog/datasets/{body['code']}/versions"
    assert (
        client.post(url, content=b"", headers={**dept.headers, "content-type": "text/csv"}).status_code == 400
    )
    assert (
        client.post(url, content=b"x", headers={**dept.headers, "content-type": "image/png"}).status_code
        == 415
    )
