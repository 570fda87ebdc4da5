"""Pins the one error shape (RFC 9457 problem+json) for every kind of failure."""

from __future__ import annotations

import pytest

PROBLEM_KEYS = {"type", "title", "status", "detail", "instance", "request_id"}


def assert_problem(resp, status: int, slug: str) -> dict:  # type: ignore[no-untyped-def]
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    body = resp.json()
    assert body.keys() >= PROBLEM_KEYS
    assert body["type"] == f"https://pdg.example/problems/{slug}"
    assert body["status"] == status
    assert body["detail"] and isinstance(body["detail"], str)
    assert body["request_id"] == resp.headers["x-request-id"]
    return body


def test_unknown_route_is_problem_404(client):
    body = assert_problem(client.get("/api/v1/nope"), 404, "not-found")
    assert "/api/v1/nope" in body["detail"]


def test_wrong_method_is_problem_405(client):
    body = assert_problem(client.delete("/health"), 405, "method-not-allowed")
    assert "DELETE" in body["detail"]


def test_validation_error_names_the_field(client, make_principal):
    admin = make_principal("admin")
    body = assert_problem(
        client.post("/api/v1/admin/organisations", json={"code": "x1", "name": "n"}, headers=admin.headers),
        422,
        "invalid",
    )
    assert "kind" in body["detail"]
    assert body["errors"][0]["field"] == "kind"


def test_malformed_json_is_400(client, make_principal):
    admin = make_principal("admin")
    resp = client.post(
        "/api/v1/admin/organisations",
        content=b'{"code": ',
        headers={**admin.headers, "content-type": "application/json"},
    )
    assert_problem(resp, 400, "malformed-json")


def test_oversized_body_is_413_before_reading_it(client, make_principal):
    admin = make_principal("admin")
    resp = client.post(
        "/api/v1/admin/organisations",
        content=b"x" * (2 * 1024 * 1024),
        headers={**admin.headers, "content-type": "application/json"},
    )
    body = assert_problem(resp, 413, "too-large")
    assert "limit" in body["detail"]


def test_domain_errors_map_to_their_status(client, make_principal):
    admin = make_principal("admin")
    ok = client.post(
        "/api/v1/admin/organisations",
        json={"code": "DUP-1", "name": "甲", "kind": "department"},
        headers=admin.headers,
    )
    assert ok.status_code == 201, ok.text
    dup = client.post(
        "/api/v1/admin/organisations",
        json={"code": "DUP-1", "name": "甲", "kind": "department"},
        headers=admin.headers,
    )
    assert_problem(dup, 409, "conflict")


def test_incoming_request_id_is_echoed_when_safe_and_replaced_when_not(client):
    assert client.get("/health", headers={"x-request-id": "abcdef123456"}).headers["x-request-id"] == "abcdef123456"
    replaced = client.get("/health", headers={"x-request-id": "bad id\twith tabs"}).headers["x-request-id"]
    assert replaced != "bad id\twith tabs" and len(replaced) == 16


@pytest.mark.parametrize("path", ["/api/v1/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/api/v1/admin/%00"])
def test_path_tricks_are_problems_not_500(client, path):
    resp = client.get(path)
    assert 400 <= resp.status_code < 500
    assert resp.headers["content-type"].startswith("application/problem+json")


def test_nul_characters_are_refused_not_500(client, make_principal):
    admin = make_principal("admin")
    assert_problem(client.get("/api/v1/catalog/datasets/%00"), 400, "bad-request")
    assert_problem(client.get("/api/v1/catalog/datasets", params={"q": "a\x00b"}), 400, "bad-request")
    # In a JSON body: SQLite stores it, PostgreSQL refuses it — either way a clear answer, never a 500.
    r = client.post(
        "/api/v1/admin/organisations",
        json={"code": "NUL-1", "name": "a\u0000b", "kind": "department"},
        headers=admin.headers,
    )
    assert r.status_code in (201, 400), r.text
