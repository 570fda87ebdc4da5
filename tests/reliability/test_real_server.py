"""Against a real `pdg serve` on loopback: oversized headers, slowloris connections, a slow reader of a
large download — the one worker keeps serving everyone else."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.reliability._server import Server
from tests.reliability._world import database, populate, settings_for

GEO = "510100-KJ-0001"  # opened unconditionally: the large download
API = "/api/v1"
ROWS = {"population": 100, "legal_person": 100, "geospatial": 60_000, "certificate": 100}


@pytest.fixture(scope="module")
def server(db_template: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from gateway.state import build_state

    tmp = tmp_path_factory.mktemp("served")
    with database(db_template, tmp) as url:
        settings = settings_for(tmp, url)
        state = build_state(settings)
        populate(state, rows=ROWS)
        state.engine.dispose()
        srv = Server(settings.data_dir, url, settings.keys_path)
        srv.start()
        try:
            yield srv
        finally:
            srv.stop()


def _raw(server: Server, data: bytes, *, rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", server.port))
    s.sendall(data)
    return s


def _served(server: Server, n: int = 20) -> list[int]:
    """n ordinary requests, each on a new connection."""
    out = []
    for i in range(n):
        path = ("/health", f"{API}/catalog/datasets", f"{API}/open/datasets/{GEO}/rows?_size=5")[i % 3]
        out.append(httpx.get(server.url + path, timeout=30.0).status_code)
    return out


def test_oversized_headers_are_refused_and_the_server_goes_on(server: Server) -> None:
    big = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 64 * 1024 + b"\r\n\r\n"
    with contextlib.closing(_raw(server, big)) as s:
        s.settimeout(30)
        status_line = s.recv(1024).split(b"\r\n", 1)[0]
    assert status_line.split()[1] == b"431", status_line
    r = httpx.get(server.url + "/health", headers={"X-Big": "a" * 32 * 1024}, timeout=30.0)
    assert r.status_code == 431 and r.headers["content-type"] == "application/problem+json"
    assert _served(server, 3) == [200, 200, 200]


def test_slowloris_connections_do_not_starve_others(server: Server) -> None:
    """200 connections that send half a request and then trickle; everyone else is still served."""
    slow = [_raw(server, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow-") for _ in range(200)]
    try:
        for s in slow[:50]:
            s.sendall(b"a")  # still going, one byte at a time
        assert _served(server) == [200] * 20
    finally:
        for s in slow:
            s.close()
    assert _served(server, 3) == [200] * 3


def test_a_slow_reader_of_a_large_download_starves_no_one(server: Server) -> None:
    request = f"GET {API}/open/datasets/{GEO}/download.csv HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    with contextlib.closing(_raw(server, request, rcvbuf=4096)) as s:
        s.settimeout(30)
        first = s.recv(4096)
        assert first.startswith(b"HTTP/1.1 200"), first[:100]
        time.sleep(0.5)  # the server has filled the socket buffers and waits on this reader
        served = _served(server)
        got = len(first) + len(s.recv(4096))
        assert served == [200] * 20
        s.settimeout(60)
        while chunk := s.recv(1 << 16):  # the slow reader is still being served, to the end
            got += len(chunk)
            if chunk.endswith(b"0\r\n\r\n"):
                break
    assert got > 1_000_000  # the download was far larger than what any buffer held during the checks


def test_abandoned_downloads_are_each_logged_once_and_stall_no_one(server: Server) -> None:
    """Clients that hang up mid-download: the server goes on serving, and each download is in the log once
    (the record is written when the stream is closed; it once blocked the event loop while doing so)."""
    from sqlalchemy import text

    from gateway.db import make_engine

    rids = [f"abandon-{i}" for i in range(4)]
    for rid in rids:
        request = f"GET {API}/open/datasets/{GEO}/download.csv HTTP/1.1\r\nHost: x\r\nX-Request-ID: {rid}\r\n\r\n"
        with contextlib.closing(_raw(server, request.encode(), rcvbuf=4096)) as s:
            s.settimeout(30)
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
    assert _served(server) == [200] * 20
    engine = make_engine(server.db_url, pool_size=1)
    try:
        deadline, logged = time.monotonic() + 30, []
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                logged = [
                    r[0]
                    for r in conn.execute(text("SELECT request_id FROM audit_record WHERE request_id LIKE 'abandon-%'"))
                ]
            if len(logged) >= len(rids):
                break
            time.sleep(0.2)
    finally:
        engine.dispose()
    assert sorted(logged) == rids
