"""Several real gateway processes (`pdg serve`) on loopback ports, sharing one PostgreSQL database, one data
directory and one keys directory — what a Deployment with a ReadWriteMany volume runs. Used by the replica
test and by bench/bench_replicas.py.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[2]
PDG = str(Path(sys.executable).with_name("pdg"))
SERVE = [PDG, "serve"]  # as deployed: the console script
PG_ADMIN_URL = os.environ.get("PDG_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextlib.contextmanager
def fresh_database(prefix: str = "pdg_scale") -> Iterator[str]:
    """An empty PostgreSQL database of our own (the gateways migrate it); dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """Gateway replicas started by this process; `stop()` ends exactly those (their process groups)."""

    root: Path
    db_url: str
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    killed: set[str] = field(default_factory=set)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    def env(self, **more: str) -> dict[str, str]:
        """The environment of a replica or a CLI call: only our PDG_ settings, nothing inherited."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PDG_", "PROMETHEUS_"))}
        base.pop("DATABASE_URL", None)
        return {
            **base,
            "PYTHONPATH": str(REPO),
            "PDG_ENV": "production",  # as deployed: a real secret key is required
            "PDG_SECRET_KEY": self.secret_key,  # shared, so a cursor from one replica works on another
            "PDG_DATABASE_URL": self.db_url,
            "PDG_DATA_DIR": str(self.data_dir),
            "PDG_KEYS_DIR": str(self.keys_dir),
            "PDG_HOST": "127.0.0.1",
            "PDG_WORKERS": "1",
            "PDG_SANDBOX_WARM": "false",  # three replicas on two cores: start sandbox workers on first use
            "PDG_LOG_LEVEL": "WARNING",
            **self.extra_env,
            **more,
        }

    def start(self, n: int, *, timeout: float = 120.0) -> list[str]:
        """Start n more replicas at once and wait until every one answers /ready."""
        return self.wait_ready(self.launch(n), timeout=timeout)

    def launch(self, n: int) -> list[str]:
        """Start n more replicas at once; returns their base URLs (not ready yet)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        new = []
        taken = {int(u.rsplit(":", 1)[1]) for u in self.urls}
        for _ in range(n):
            port = free_port()
            while port in taken:  # bind(0) may hand out a just-released port again
                port = free_port()
            taken.add(port)
            log = open(self.root / f"replica-{port}.log", "wb")  # noqa: SIM115 - closed with the process
            proc = subprocess.Popen(
                SERVE,
                env=self.env(PDG_PORT=str(port)),
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() also ends its sandbox worker
            )
            log.close()
            self.procs.append(proc)
            new.append(f"http://127.0.0.1:{port}")
        self.urls.extend(new)
        return new

    def wait_ready(self, urls: list[str], *, timeout: float = 120.0) -> list[str]:
        """Wait until each of `urls` answers /ready; a replica that exits or stays unready is an error."""
        deadline = time.monotonic() + timeout
        for url in urls:
            proc = self.procs[self.urls.index(url)]
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"replica {url} exited with {proc.returncode}: {self.log_tail(url)}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"replica {url} not ready after {timeout:.0f} s: {self.log_tail(url)}")
                time.sleep(0.25)
        return urls

    def wait_migrated(self, timeout: float = 120.0) -> None:
        """Wait until a replica has migrated the database (its organisation table exists)."""
        engine = create_engine(self.db_url)
        deadline = time.monotonic() + timeout
        try:
            while True:
                with engine.connect() as conn:
                    if conn.execute(text("SELECT to_regclass('public.alembic_version')")).scalar() is not None:
                        from gateway import db

                        with contextlib.suppress(Exception):
                            if db.current_revision(engine) == db.head_revision():
                                return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"database not migrated after {timeout:.0f} s")
                time.sleep(0.25)
        finally:
            engine.dispose()

    def log_tail(self, url: str, chars: int = 2000) -> str:
        path = self.root / f"replica-{url.rsplit(':', 1)[1]}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM each replica's process group, then SIGKILL what is left after 10 s."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the group: a sandbox worker must not outlive it
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self.procs.clear()
        self.urls.clear()

    def kill(self, url: str) -> None:
        """SIGKILL one replica's process group at once (a crashed pod: no shutdown, no clean-up)."""
        proc = self.procs[self.urls.index(url)]
        self.killed.add(url)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def casualties(self) -> dict[str, str]:
        """Replicas that exited without the test killing them, with the end of their logs."""
        return {
            f"{url} (exit {proc.returncode})": self.log_tail(url)
            for url, proc in zip(self.urls, self.procs, strict=True)
            if proc.poll() is not None and url not in self.killed
        }

    def cli(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run `pdg ARGS` against the same database and directories."""
        out = subprocess.run(
            [PDG, *args], env=self.env(), cwd=self.root, capture_output=True, text=True, timeout=timeout
        )
        if check and out.returncode != 0:
            raise RuntimeError(f"pdg {' '.join(args)} failed ({out.returncode}): {out.stderr[-2000:]}")
        return out

    def make_principal(self, role: str, org: str, kind: str) -> str:
        """Create the organisation when missing and a principal in it, with the CLI; returns its token."""
        made = self.cli("admin", "organisation", "create", "--code", org, "--name", f"测试{org}", "--kind", kind,
                        check=False)  # fmt: skip
        if made.returncode != 0 and "exists" not in made.stderr + made.stdout:
            raise RuntimeError(f"organisation {org}: {made.stderr[-1000:]}")
        out = self.cli("admin", "principal", "create", "--role", role, "--org", org, "--name", f"{role} {org}")
        return out.stdout.strip().splitlines()[-1]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
