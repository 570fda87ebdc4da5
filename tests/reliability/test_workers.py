"""`pdg serve` with two workers: each listens on a socket of its own on the one port (SO_REUSEPORT), so
keep-alive clients are spread over both, and a worker restarted after a crash listens again."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.reliability._server import Server
from tests.reliability._world import database, settings_for


@pytest.fixture
def two_workers(db_template: str, tmp_path: Path) -> Iterator[Server]:
    with database(db_template, tmp_path) as url:
        settings = settings_for(tmp_path, url)
        srv = Server(settings.data_dir, url, settings.keys_path, extra_env={"PDG_WORKERS": "2"})
        srv.start()
        try:
            yield srv
        finally:
            srv.stop()


def _sockets_by_pid(port: int, state: str) -> Counter[int]:
    """How many TCP sockets on local `port` in `state` (/proc/net/tcp: 01 established, 0A listening)
    each process holds."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if int(f[1].split(":")[1], 16) == port and f[3] == state:
            inodes.add(f[9])
    owners: Counter[int] = Counter()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        owners[int(pid)] += 1
    return owners


def _keep_alive(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert s.recv(65536).startswith(b"HTTP/1.1 200")
    return s


def _listeners(port: int, n: int, seconds: float = 120) -> Counter[int]:
    deadline = time.monotonic() + seconds
    while (found := _sockets_by_pid(port, "0A")) and (len(found) < n) and time.monotonic() < deadline:
        time.sleep(0.5)
    return found


def test_each_worker_listens_and_takes_its_share_of_connections(two_workers: Server) -> None:
    listeners = _listeners(two_workers.port, 2)
    assert len(listeners) == 2 and set(listeners.values()) == {1}, listeners
    conns = [_keep_alive(two_workers.port) for _ in range(16)]
    try:
        served = _sockets_by_pid(two_workers.port, "01")
        # the kernel spreads connections over the group by hash: all 16 on one worker has odds 2**-15
        assert set(served) == set(listeners), (served, listeners)
        assert sum(served.values()) == 16
    finally:
        for s in conns:
            s.close()


def test_a_worker_killed_is_replaced_by_one_that_listens_again(two_workers: Server) -> None:
    before = _listeners(two_workers.port, 2)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        now = _sockets_by_pid(two_workers.port, "0A")
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.5)
    assert len(now) == 2 and victim not in now, now
    codes = [httpx.get(two_workers.url + "/health", timeout=30).status_code for _ in range(10)]
    assert codes == [200] * 10
