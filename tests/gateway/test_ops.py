"""Liveness, readiness and metrics."""

from __future__ import annotations


def test_health(client):
    assert client.get("/health").json() == {"status": "ok"}


def test_ready_checks_database_migrations_keys_policies(client):
    resp = client.get("/ready")
    assert resp.status_code == 200, resp.text
    assert resp.json()["checks"] == {"database": "ok", "migrations": "ok", "keys": "ok", "policies": "ok"}


def test_ready_is_503_when_migrations_are_behind(client, engine):
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'stale'")
    resp = client.get("/ready")
    assert resp.status_code == 503
    assert "pdg db upgrade" in resp.json()["checks"]["migrations"]


def test_metrics_counts_requests_by_route_template(client):
    client.get("/health")
    text = client.get("/metrics").text
    assert 'pdg_http_requests_total{method="GET",route="/health",status="200"}' in text
