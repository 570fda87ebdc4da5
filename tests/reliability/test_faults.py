"""Faults: the data disk full (a small tmpfs), and (PostgreSQL only) the database restarted under load."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from catalog import demo_data, samples
from tests.conftest import BACKEND

GEO = "510100-KJ-0001"
API = "/api/v1"
DISK_MB = 16


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs mounted for this test (needs root, as in CI's container)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the disk-full test (run as root): {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def settings(settings, small_disk):  # type: ignore[no-untyped-def]
    """The data directory on the small disk; the database and keys stay where they were."""
    settings.data_dir = small_disk / "var"
    return settings


def _upload(client, who, body: bytes):  # type: ignore[no-untyped-def]
    return client.post(
        f"{API}/catalog/datasets/{GEO}/versions", content=body, headers={**who.headers, "content-type": "text/csv"}
    )


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_a_full_data_disk_is_507_and_corrupts_nothing(client, make_principal, settings, tmp_path) -> None:
    dept = make_principal("department", org="510100-GH")
    reg = demo_data.registration("geospatial").model_dump(mode="json")
    assert client.post(f"{API}/catalog/datasets", json=reg, headers=dept.headers).status_code == 201
    small = samples.write(samples.generate("geospatial", 200), tmp_path / "small.csv").read_bytes()
    assert _upload(client, dept, small).status_code == 201
    rows_before = client.get(f"{API}/open/datasets/{GEO}/rows", params={"_size": "1000"}).json()["data"]

    # 1. The upload itself does not fit.
    huge = samples.write(samples.generate("geospatial", 150_000), tmp_path / "huge.csv").read_bytes()
    assert len(huge) > DISK_MB * 2**20
    r = _upload(client, dept, huge)
    assert r.status_code == 507 and r.headers["content-type"] == "application/problem+json", r.text
    assert "storage is full" in r.json()["detail"]

    # 2. The upload fits; the version being prepared does not.
    medium = samples.write(samples.generate("geospatial", 20_000), tmp_path / "medium.csv").read_bytes()
    ballast = settings.data_dir / "ballast"
    with open(ballast, "wb") as f:
        f.write(b"\0" * (_free(settings.data_dir) - len(medium) - 64 * 1024))
    r = _upload(client, dept, medium)
    assert r.status_code == 507, r.text

    # Nothing half-written, the previous version live and whole; with space again, publishing works.
    for scratch in ("uploads", "staging"):
        assert not any((settings.data_dir / scratch).iterdir())
    assert sorted(p.name for p in (settings.data_dir / "datasets" / GEO).iterdir()) == ["v1"]
    ds = client.get(f"{API}/catalog/datasets/{GEO}", headers=dept.headers).json()
    assert ds["current_version"] == 1
    assert client.get(f"{API}/open/datasets/{GEO}/rows", params={"_size": "1000"}).json()["data"] == rows_before
    ballast.unlink()
    r = _upload(client, dept, medium)
    assert r.status_code == 201 and r.json()["number"] == 2, r.text


if BACKEND == "postgresql":  # the fault exists only there: SQLite is a file in the process

    # Restarting the server cuts every other test's connections: `make test` runs it alone, after the rest.
    @pytest.mark.serial
    def test_postgresql_restart_under_load_loses_nothing_acknowledged(tmp_path) -> None:
        from tests.reliability._server import Server
        from tests.reliability._world import database, populate, settings_for

        # Not cloned from the session template: the restart would break the template fixture's connection.
        with database(None, tmp_path) as url:
            from gateway.state import build_state

            settings = settings_for(tmp_path, url)
            state = build_state(settings)
            who, _ = populate(
                state, rows={"population": 100, "legal_person": 100, "geospatial": 300, "certificate": 100}
            )
            state.engine.dispose()
            server = Server(settings.data_dir, url, settings.keys_path)
            server.start()
            acked: list[str] = []
            lock, stop = threading.Lock(), threading.Event()
            auditor = who["auditor"].headers  # type: ignore[union-attr]

            def worker(i: int) -> None:
                path, headers = [(f"{API}/open/datasets/{GEO}/rows", {}), (f"{API}/audit/events", auditor)][i % 2]
                with httpx.Client(base_url=server.url, timeout=30.0) as c:
                    while not stop.is_set():
                        rid = f"pgfault-{uuid.uuid4().hex}"
                        try:
                            r = c.get(path, headers={**headers, "X-Request-ID": rid})
                        except httpx.HTTPError:
                            continue
                        if r.is_success:
                            with lock:
                                acked.append(rid)

            threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(8)]
            try:
                for t in threads:
                    t.start()
                while len(acked) < 50:
                    stop.wait(0.05)
                _pg_ctl("restart")
                before = len(acked)
                while len(acked) < before + 50:  # the gateway reconnected and serves again
                    stop.wait(0.05)
            finally:
                stop.set()
                for t in threads:
                    t.join(30)
                server.stop()
                _pg_ctl("start")  # whatever happened, leave PostgreSQL running
            from sqlalchemy import text

            from gateway.db import make_engine

            engine = make_engine(url, pool_size=1)
            with engine.connect() as conn:
                logged = {r[0] for r in conn.execute(text("SELECT request_id FROM audit_record"))}
            engine.dispose()
            missing = [rid for rid in acked if rid not in logged]
            assert not missing, f"{len(missing)} of {len(acked)} acknowledged requests are not in the audit log"

    def _pg_ctl(action: str) -> None:
        version = sorted(os.listdir("/etc/postgresql"))[0]
        if action == "start":
            status = subprocess.run(["pg_ctlcluster", version, "main", "status"], capture_output=True)
            if status.returncode == 0:
                return
        cmd = [shutil.which("pg_ctlcluster") or "pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
