"""Liveness, readiness and metrics."""

from __future__ import annotations

import time


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


def test_behind_the_ingress_metrics_are_not_served_through_the_proxy(settings, state):
    from fastapi.testclient import TestClient

    from gateway.app import create_app

    state.settings = settings.model_copy(update={"tls_terminated": True})
    with TestClient(create_app(state.settings, state=state), raise_server_exceptions=False) as c:
        for header in ({"X-Forwarded-For": "203.0.113.9"}, {"X-Real-IP": "203.0.113.9"}, {"Forwarded": "for=x"}):
            r = c.get("/metrics", headers=header)
            assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
            assert "pdg_http_requests_total" not in r.text
        # The monitoring scrape goes to the pod directly: no proxy header.
        assert "pdg_http_requests_total" in c.get("/metrics").text


def test_a_started_app_warms_its_sandbox_pool(settings, state):
    from fastapi.testclient import TestClient

    from gateway.app import create_app
    from sandbox import queries

    state.settings = settings.model_copy(update={"sandbox_warm": True})
    try:
        with TestClient(create_app(state.settings, state=state)) as c:
            assert c.get("/health").status_code == 200
            runner, deadline = queries.default_runner(), time.monotonic() + 60
            while len(runner.worker_pids()) < runner.pool_size and time.monotonic() < deadline:
                time.sleep(0.1)
            assert len(runner.worker_pids()) == runner.pool_size  # ready before any query asked
    finally:
        queries.shutdown_runner()
