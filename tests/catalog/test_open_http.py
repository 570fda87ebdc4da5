"""Open data over HTTP: search, DCAT, rows and downloads — and never more than the open edition."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest

from catalog import demo_data, samples

LP = "510100-FR-0001"  # legal persons: unconditional open (masked edition)
POP = "510100-RK-0001"  # population: conditional


@pytest.fixture
def published(client, make_principal, tmp_path):
    """Legal persons (open) and population (conditional) published; a closed dataset registered."""
    scjg = make_principal("department", org="510100-SCJG")
    ga = make_principal("department", org="510100-GA")
    for who, lib, n in ((scjg, "legal_person", 250), (ga, "population", 120)):
        body = demo_data.registration(lib).model_dump(mode="json")
        assert client.post("/api/v1/catalog/datasets", json=body, headers=who.headers).status_code == 201
        csv = samples.write(samples.generate(lib, n), tmp_path / f"{lib}.csv").read_bytes()
        r = client.post(
            f"/api/v1/catalog/datasets/{body['code']}/versions",
            content=csv,
            headers={**who.headers, "content-type": "text/csv"},
        )
        assert r.status_code == 201, r.text
    closed = demo_data.registration("population").model_dump(mode="json")
    closed.update(
        code="510100-RK-0900",
        title="内部人口核查名单",
        open_type="closed",
        share_type="closed",
        keywords=["核查"],
    )
    assert client.post("/api/v1/catalog/datasets", json=closed, headers=ga.headers).status_code == 201
    return {"scjg": scjg, "ga": ga}


def test_search_finds_chinese_substrings_with_facets(client, published):
    r = client.get("/api/v1/catalog/datasets", params={"q": "法人"})
    assert r.status_code == 200
    codes = [d["code"] for d in r.json()["data"]]
    assert codes[0] == LP
    facets = r.json()["meta"]["facets"]
    assert facets["open_type"].get("unconditional") == 1
    by_cat = client.get("/api/v1/catalog/datasets", params={"category": "population"}).json()
    assert [d["code"] for d in by_cat["data"]] == [POP]
    assert client.get("/api/v1/catalog/datasets", params={"q": "legal"}).status_code == 200


def test_closed_datasets_are_invisible_to_the_public_but_not_to_their_owner(client, published):
    public = client.get("/api/v1/catalog/datasets").json()
    assert "510100-RK-0900" not in [d["code"] for d in public["data"]]
    assert client.get("/api/v1/catalog/datasets/510100-RK-0900").status_code in (403, 404)
    owner = client.get("/api/v1/catalog/datasets", headers=published["ga"].headers).json()
    assert "510100-RK-0900" in [d["code"] for d in owner["data"]]


def test_conditional_dataset_shows_metadata_and_how_to_apply(client, published):
    r = client.get(f"/api/v1/catalog/datasets/{POP}")
    assert r.status_code == 200 and r.json()["access"] == "apply"


def test_dcat_catalog_and_dataset(client, published):
    doc = client.get("/api/v1/catalog/dcat")
    assert doc.headers["content-type"].startswith("application/ld+json")
    body = doc.json()
    assert body["@type"] == "dcat:Catalog"
    lp = next(d for d in body["dcat:dataset"] if d["dct:identifier"] == LP)
    assert lp["pdg:openType"] == "unconditional" and lp["pdg:grade"].startswith("G")
    assert any(x["dcat:mediaType"] == "text/csv" for x in lp["dcat:distribution"])
    one = client.get(f"/api/v1/catalog/datasets/{LP}/dcat").json()
    assert one["@context"]["dcat"] == "http://www.w3.org/ns/dcat#"
    dictionary = client.get(f"/api/v1/catalog/datasets/{LP}/dictionary").json()
    rep = next(f for f in dictionary["fields"] if f["name"] == "legal_representative")
    assert rep["public_masking"] != "none"


def test_rows_with_filters_sort_and_keyset_pages(client, published):
    url = f"/api/v1/open/datasets/{LP}/rows"
    first = client.get(url, params={"_size": 100, "_count": 1})
    assert first.status_code == 200, first.text
    body = first.json()
    assert set(body) == {"data", "links", "meta"} and body["meta"]["total"] == 250
    seen = [r["uscc"] for r in body["data"]]
    nxt = body["links"]["next"]
    while nxt:
        page = client.get(nxt).json()
        seen += [r["uscc"] for r in page["data"]]
        nxt = page["links"]["next"]
    assert len(seen) == len(set(seen)) == 250
    status = client.get(url, params={"status": "存续", "_fields": "uscc,status"}).json()["data"]
    assert status and all(set(r) == {"uscc", "status"} and r["status"] == "存续" for r in status)


def test_rows_never_serve_raw_personal_values(client, published):
    sample = samples.generate("legal_person", 250)
    reps = set(sample.frame["legal_representative"])
    rows = client.get(f"/api/v1/open/datasets/{LP}/rows", params={"_size": 1000}).json()["data"]
    assert rows and not any(r.get("legal_representative") in reps for r in rows)


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "parquet"])
def test_downloads_stream_the_open_edition_and_are_audited(client, published, engine, fmt):
    r = client.get(f"/api/v1/open/datasets/{LP}/download.{fmt}")
    assert r.status_code == 200 and r.headers["etag"]
    if fmt == "csv":
        assert r.text.count("\n") == 251
    elif fmt == "ndjson":
        assert len([json.loads(x) for x in r.text.splitlines()]) == 250
    else:
        assert pq.read_table(io.BytesIO(r.content)).num_rows == 250
    again = client.get(
        f"/api/v1/open/datasets/{LP}/download.{fmt}", headers={"if-none-match": r.headers["etag"]}
    )
    assert again.status_code == 304
    from tests.conftest import audit_rows

    reads = [
        a
        for a in audit_rows(engine, action="dataset:read_open", dataset=LP)
        if a.outcome.get("format") == fmt
    ]
    assert reads and reads[0].outcome["rows"] == 250 and reads[0].outcome["bytes"] > 0


def test_csv_download_bom_and_gbk(client, published):
    bom = client.get(f"/api/v1/open/datasets/{LP}/download.csv", params={"bom": "true"})
    assert bom.content[:3] == b"\xef\xbb\xbf"
    gbk = client.get(f"/api/v1/open/datasets/{LP}/download.csv", params={"encoding": "gbk"})
    assert "有限公司" in gbk.content.decode("gbk")


def test_parquet_range_requests(client, published):
    full = client.get(f"/api/v1/open/datasets/{LP}/download.parquet").content
    part = client.get(f"/api/v1/open/datasets/{LP}/download.parquet", headers={"range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == full[:100]
    bad = client.get(f"/api/v1/open/datasets/{LP}/download.parquet", headers={"range": f"bytes={len(full)}-"})
    assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{len(full)}"


# ---- must never happen: every open endpoint against what is not open ----


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/open/datasets/{POP}/rows",
        f"/api/v1/open/datasets/{POP}/download.csv",
        f"/api/v1/open/datasets/{POP}/download.parquet",
        "/api/v1/open/datasets/510100-RK-0900/rows",
        "/api/v1/open/datasets/510100-RK-0900/download.ndjson",
        "/api/v1/open/datasets/..%2F..%2Fkeys/rows",
        "/api/v1/open/datasets/%2E%2E/download.csv",
        f"/api/v1/open/datasets/{LP}/download.sm4",
        f"/api/v1/open/datasets/{LP}%2Fv1%2Fdata.parquet.sm4/rows",
        "/api/v1/open/datasets/NO-SUCH-CODE/rows",
    ],
)
def test_nothing_but_open_editions_is_served(client, published, path):
    r = client.get(path)
    assert r.status_code in (400, 403, 404, 422), (path, r.status_code)
    assert r.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("who", ["public", "ga", "scjg"])
def test_conditional_rows_are_refused_to_everyone_on_the_open_path(client, published, who):
    headers = {} if who == "public" else published[who].headers
    assert client.get(f"/api/v1/open/datasets/{POP}/rows", headers=headers).status_code in (403, 404)


def test_raw_columns_and_cursor_tampering_are_refused(client, published):
    url = f"/api/v1/open/datasets/{LP}/rows"
    assert client.get(url, params={"_fields": "legal_representative_raw"}).status_code == 400
    nxt = client.get(url, params={"_size": 10}).json()["links"]["next"]
    cursor = nxt.split("_cursor=")[1]
    tampered = cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB")
    assert client.get(url, params={"_size": 10, "_cursor": tampered}).status_code == 400
    other_query = client.get(url, params={"_size": 10, "_cursor": cursor, "status": "存续"})
    assert other_query.status_code == 400
