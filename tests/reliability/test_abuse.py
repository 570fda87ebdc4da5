"""Hostile input, in process: token brute force, oversized bodies, decompression bombs, path traversal.

Every refusal is a 4xx application/problem+json; nothing is written outside the data directory and
nothing is left behind in it.
"""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from catalog import demo_data, samples
from tests.conftest import audit_rows

GEO = "510100-KJ-0001"
API = "/api/v1"
FAILURES = 3  # sign-in failures allowed per address and minute in these tests


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    """Tight limits, so the tests reach them with a handful of small requests."""
    settings.limits.auth_failures_per_minute = FAILURES
    settings.limits.max_json_bytes = 4096
    settings.limits.max_upload_bytes = 512 * 1024
    return settings


@pytest.fixture
def dept(client, make_principal):  # type: ignore[no-untyped-def]
    """The geospatial department with its dataset registered (no version yet)."""
    who = make_principal("department", org="510100-GH")
    r = client.post(
        f"{API}/catalog/datasets",
        json=demo_data.registration("geospatial").model_dump(mode="json"),
        headers=who.headers,
    )
    assert r.status_code == 201, r.text
    return who


def _problem(r: Any, *statuses: int) -> dict[str, Any]:
    assert r.status_code in statuses, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == r.status_code and body["detail"]
    return body


def _no_leftovers(data_dir: Path) -> None:
    for scratch in ("uploads", "staging", "tmp"):
        d = data_dir / scratch
        assert not d.exists() or not any(d.iterdir()), f"{scratch}/ keeps files"


# ---------------------------------------------------------------- tokens


def test_token_brute_force_is_rate_limited_and_audited_once_per_window(client, engine) -> None:
    answers = [
        client.get(f"{API}/me", headers={"Authorization": f"Bearer pdg_{i:016d}_guess"}).status_code for i in range(12)
    ]
    assert answers[:FAILURES] == [401] * FAILURES
    assert answers[FAILURES:] == [429] * (12 - FAILURES)
    r = client.get(f"{API}/me", headers={"Authorization": "Bearer pdg_0000000000000000_guess"})
    body = _problem(r, 429)
    assert int(r.headers["Retry-After"]) >= 1 and "failed sign-ins" in body["detail"]
    logged = audit_rows(engine, action="auth:rate_limited")
    assert len(logged) == 1  # one record per address and window, not one per attempt
    assert not logged[0].allowed and logged[0].principal == "public"


def test_a_malformed_authorization_header_is_401_not_a_crash(client) -> None:
    for value in ("Bearer", "Basic dXNlcjpwYXNz", "Bearer \x7f\x00", "Bearer " + "A" * 5000):
        _problem(client.get(f"{API}/me", headers={"Authorization": value}), 401, 429)


# ---------------------------------------------------------------- sizes


def test_oversized_json_is_413_declared_or_streamed(client, dept) -> None:
    big = json.dumps({"title": "x" * 10_000}).encode()
    headers = {**dept.headers, "content-type": "application/json"}
    _problem(client.patch(f"{API}/catalog/datasets/{GEO}", content=big, headers=headers), 413)

    def chunked():  # no Content-Length: the limit is enforced while reading
        for i in range(0, len(big), 1024):
            yield big[i : i + 1024]

    _problem(client.patch(f"{API}/catalog/datasets/{GEO}", content=chunked(), headers=headers), 413)


def test_oversized_upload_is_413_and_leaves_nothing(client, dept, settings) -> None:
    body = b"a,b\n" + b"1,2\n" * 200_000
    url = f"{API}/catalog/datasets/{GEO}/versions"
    _problem(client.post(url, content=body, headers={**dept.headers, "content-type": "text/csv"}), 413)
    _problem(client.post(url, content=iter([body]), headers={**dept.headers, "content-type": "text/csv"}), 413)
    _no_leftovers(settings.data_dir)


def test_oversized_headers_are_431(client) -> None:
    body = _problem(client.get(f"{API}/catalog/datasets", headers={"X-Big": "a" * 20_000}), 431)
    assert "limit" in body["detail"]


def test_a_lying_content_length_is_refused(client, dept) -> None:
    r = client.post(
        f"{API}/catalog/datasets",
        content=b"{}",
        headers={**dept.headers, "content-type": "application/json", "content-length": "ten"},
    )
    _problem(r, 400)


# ---------------------------------------------------------------- decompression bombs


def _xlsx_bomb(path: Path, uncompressed_mb: int = 24) -> Path:
    """A real workbook whose first sheet is swapped for one that inflates ~1000:1."""
    real = samples.write(samples.generate("geospatial", 5), path.with_name("real.xlsx"), fmt="xlsx")
    row = b'<row><c t="inlineStr"><is><t>' + b"0" * 1000 + b"</t></is></c></row>"
    with zipfile.ZipFile(real) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        sheets = sorted(n for n in src.namelist() if n.startswith("xl/worksheets/sheet"))
        for name in src.namelist():
            if name != sheets[0]:
                zf.writestr(name, src.read(name))
        with zf.open(sheets[0], "w") as sheet:
            sheet.write(b'<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/')
            sheet.write(b'spreadsheetml/2006/main"><sheetData>')
            for _ in range(uncompressed_mb * 1024):
                sheet.write(row)
            sheet.write(b"</sheetData></worksheet>")
    return path


def test_xlsx_zip_bomb_is_refused_without_inflating(client, dept, settings, tmp_path) -> None:
    bomb = _xlsx_bomb(tmp_path / "bomb.xlsx").read_bytes()
    assert len(bomb) < 200 * 1024  # it fits any upload limit
    xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    r = client.post(
        f"{API}/catalog/datasets/{GEO}/versions", content=bomb, headers={**dept.headers, "content-type": xlsx}
    )
    _problem(r, 413, 422)
    _no_leftovers(settings.data_dir)


def test_gzip_content_encoding_is_never_inflated(client, dept, settings) -> None:
    """The gateway does not decode Content-Encoding: a gzip bomb stays 100 KB of opaque bytes."""
    bomb = gzip.compress(b"0" * (64 * 2**20), compresslevel=9)
    enc = {**dept.headers, "content-encoding": "gzip"}
    r = client.post(f"{API}/catalog/datasets/{GEO}/versions", content=bomb, headers={**enc, "content-type": "text/csv"})
    _problem(r, 400, 413, 415, 422)
    body = gzip.compress(json.dumps({"title": "x"}).encode())
    r = client.patch(f"{API}/catalog/datasets/{GEO}", content=body, headers={**enc, "content-type": "application/json"})
    _problem(r, 400, 415, 422)
    _no_leftovers(settings.data_dir)


def test_audit_verify_zip_bomb_is_refused(client, make_principal, settings, tmp_path) -> None:
    auditor = make_principal("auditor")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("records.ndjson", "w") as f:
        for _ in range(64):
            f.write(b"\n" * 2**20)
    r = client.post(
        f"{API}/audit/verify", content=buf.getvalue(), headers={**auditor.headers, "content-type": "application/zip"}
    )
    assert r.status_code < 500, r.text
    if r.status_code == 200:
        assert r.json()["ok"] is False
    _no_leftovers(settings.data_dir)


# ---------------------------------------------------------------- path traversal

# Encoded: a bare `..` is resolved by the client before it is sent (RFC 3986 dot segments).
TRAVERSALS = [
    "..%2F..%2Fkeys",
    "..%2f..%2f..%2fetc%2fpasswd",
    "%2e%2e",
    "..%5C..%5Ckeys",
    "%00",
    "a%2F..%2F..%2Fkeys",
]


@pytest.mark.parametrize("name", TRAVERSALS)
def test_traversal_in_path_names_reaches_no_file(client, dept, name) -> None:
    auditor_like = dept.headers
    for url in (
        f"{API}/catalog/datasets/{name}",
        f"{API}/catalog/datasets/{name}/versions",
        f"{API}/catalog/datasets/{name}/dcat",
        f"{API}/open/datasets/{name}/rows",
        f"{API}/open/datasets/{name}/download.csv",
        f"{API}/open/datasets/{GEO}/download.{name}",
        f"{API}/open/datasets/{GEO}/download.csv{name}",
        f"{API}/sandbox/exports/{name}",
        f"{API}/sandbox/queries/{name}",
        f"{API}/audit/events/{name}",
    ):
        r = client.get(url, headers=auditor_like)
        assert 400 <= r.status_code < 500, (url, r.status_code, r.text[:200])


def test_traversal_in_a_dataset_code_is_refused_at_registration(client, dept) -> None:
    body = demo_data.registration("geospatial").model_dump(mode="json")
    for code in ("../../keys", "..", "a/../../b", "510100\\..\\x", "CON", "a" * 300):
        _problem(
            client.post(f"{API}/catalog/datasets", json={**body, "code": code}, headers=dept.headers),
            400,
            403,
            409,
            422,
        )


def test_traversal_in_upload_file_and_sheet_names(client, dept, settings, tmp_path) -> None:
    csv = samples.write(samples.generate("geospatial", 20), tmp_path / "g.csv").read_bytes()
    url = f"{API}/catalog/datasets/{GEO}/versions"
    outside = tmp_path / "evil.csv"
    name = "../" * 12 + str(outside).lstrip("/")
    r = client.post(url, files={"file": (name, csv, "text/csv")}, headers=dept.headers)
    assert r.status_code in (201, 422), r.text  # the client's file name never becomes a path
    assert not outside.exists()
    xlsx = samples.write(samples.generate("geospatial", 20), tmp_path / "g.xlsx", fmt="xlsx").read_bytes()
    for sheet in ("../../../etc/passwd", "..\\..\\x", "S\x00"):
        r = client.post(
            url,
            params={"sheet": sheet, "format": "xlsx"},
            content=xlsx,
            headers={**dept.headers, "content-type": "application/octet-stream"},
        )
        _problem(r, 400, 404, 422)
    _no_leftovers(settings.data_dir)


def test_request_ids_are_never_echoed_unsafely(client) -> None:
    r = client.get("/health", headers={"X-Request-ID": "../../etc/passwd\r\nSet-Cookie: x=1"})
    assert r.status_code == 200 and "/" not in r.headers["x-request-id"] and "set-cookie" not in r.headers


HUGE = 2**63  # one past the largest BIGINT: the database cannot even compare it


@pytest.mark.parametrize(
    "method,path",
    [
        ("POST", "/sandbox/requests/{n}/decision"),
        ("POST", "/sandbox/exports/{n}/review"),
        ("GET", "/sandbox/queries/{n}"),
        ("GET", "/sandbox/exports/{n}"),
        ("GET", "/audit/events/{n}"),
        ("GET", "/catalog/datasets/" + GEO + "/versions/{n}/quality"),
    ],
)
def test_ids_beyond_64_bits_are_4xx(client, make_principal, method, path) -> None:
    """Found by the schema fuzzing: an id the database cannot hold must be a 404/422, not a 500."""
    who = make_principal("operator")
    body = {"decision": "approve", "reason": "x"} if method == "POST" else None
    r = client.request(method, API + path.format(n=HUGE), json=body, headers=who.headers)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:200])
