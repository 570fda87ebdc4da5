"""A real `pdg serve` in a subprocess (own data dir and database), that tests can kill -9 and restart."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

START_TIMEOUT = 120.0  # workers import pandas, pyarrow and duckdb; CI hosts are busy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """`python -m gateway.cli serve` with PDG_ settings from `env`; its own process group."""

    data_dir: Path
    db_url: str
    keys_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PDG_")}
        env.update(
            {
                "PDG_ENV": "test",
                "PDG_DATA_DIR": str(self.data_dir),
                "PDG_DATABASE_URL": self.db_url,
                "PDG_KEYS_DIR": str(self.keys_dir),
                "PDG_HOST": "127.0.0.1",
                "PDG_PORT": str(self.port),
                "PDG_WORKERS": "1",
                "PDG_LOG_LEVEL": "WARNING",
                "PDG_LIMITS__ANONYMOUS_PER_MINUTE": "1000000",
                "PDG_LIMITS__TOKEN_PER_MINUTE": "1000000",
                "PDG_SANDBOX_WARM": "false",  # tests start sandbox workers when they need them
                **self.extra_env,
            }
        )
        return env

    def start(self) -> None:
        """Start and wait until /health answers (a restart runs start-up recovery first)."""
        log = open(self.data_dir.parent / f"server-{self.starts}.log", "wb")  # noqa: SIM115 - the child owns it
        self.starts += 1
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill -9 takes the sandbox workers too
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pdg serve exited with {self.proc.returncode}; see {log.name}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"pdg serve did not answer within {START_TIMEOUT}s; see {log.name}")

    def kill(self) -> None:
        """kill -9 the whole process group: no shutdown handler, no flush, no cleanup."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        """A clean stop (SIGTERM), then kill -9 if it lingers."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        self.kill()

    def restart_after_kill(self) -> None:
        self.kill()
        self.start()
