"""Tokens: issued once, stored hashed, refused when missing, garbage, expired or revoked."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

import identity
from common import clock
from common.actor import Actor
from gateway.db import unit_of_work
from tests.conftest import audit_rows

ADMIN_ONLY = "/api/v1/admin/organisations"
BODY = {"code": "ORG-A1", "name": "甲局", "kind": "department"}


def test_token_from_factory_authenticates(client, make_principal):
    admin = make_principal("admin")
    assert client.post(ADMIN_ONLY, json=BODY, headers=admin.headers).status_code == 201


@pytest.mark.parametrize(
    "header",
    [
        "Bearer pdg_AAAAAAAAAAAAAAAA_" + "a" * 43,  # well-formed, unknown
        "Bearer garbage",
        "Basic dXNlcjpwYXNz",
        "Bearer ",
    ],
)
def test_bad_tokens_get_401_problem(client, header):
    resp = client.post(ADMIN_ONLY, json=BODY, headers={"Authorization": header})
    assert resp.status_code == 401
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.headers["www-authenticate"].startswith("Bearer")


def test_missing_token_on_a_principal_endpoint_is_401(client):
    assert client.post(ADMIN_ONLY, json=BODY).status_code == 401


def test_token_is_stored_only_as_hash(engine, make_principal):
    who = make_principal("auditor")
    with unit_of_work(engine) as s:
        rows = s.exec(select(identity.ApiToken)).all()
    secret = who.token.rsplit("_", 1)[1]
    assert all(secret not in (r.secret_hash + r.token_id) for r in rows)


def test_revoked_token_is_refused_at_once(client, engine, make_principal):
    admin = make_principal("admin")
    victim = make_principal("department")
    assert client.get("/api/v1/me", headers=victim.headers).status_code == 200
    token_id = victim.token.split("_")[1]
    assert client.delete(f"/api/v1/admin/tokens/{token_id}", headers=admin.headers).status_code == 204
    assert client.get("/api/v1/me", headers=victim.headers).status_code == 401


def test_expired_token_is_refused(client, engine, make_principal):
    make_principal("department", org="EXP-ORG")
    with unit_of_work(engine) as s:
        _, token = identity.create_principal(
            s,
            actor=Actor.system("t"),
            org_code="EXP-ORG",
            role="department",
            name="short-lived",
            expires_in=timedelta(minutes=5),
        )
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    later = clock.now() + timedelta(minutes=6)
    clock.set_clock(lambda: later)
    try:
        assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    finally:
        clock.set_clock(None)


def test_non_admin_cannot_create_principals_and_is_audited(client, engine, make_principal):
    dept = make_principal("department")
    resp = client.post(
        "/api/v1/admin/principals",
        json={"org": dept.actor.org, "role": "admin", "name": "x"},
        headers=dept.headers,
    )
    assert resp.status_code == 403
    denied = [r for r in audit_rows(engine, action="principal:create") if not r.allowed]
    assert len(denied) == 1 and denied[0].principal == dept.actor.principal


def test_brute_force_is_rate_limited(client, settings):
    settings.limits.auth_failures_per_minute = 5
    codes = [
        client.get(
            "/api/v1/me", headers={"Authorization": "Bearer pdg_AAAAAAAAAAAAAAAA_" + "b" * 43}
        ).status_code
        for _ in range(8)
    ]
    assert codes[:5] == [401] * 5
    assert codes[5:] == [429] * 3
