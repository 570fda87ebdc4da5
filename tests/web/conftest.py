"""Browser tests: a real gateway (uvicorn in a thread, its own data dir and database) driven by Chromium.

Chromium is Debian's (`apt-get install chromium`, /usr/bin/chromium) and Playwright is the Python package;
`playwright install` is never run. When either is missing the tests FAIL saying what to install.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("PDG_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
INSTALL = (
    "install them with `apt-get install -y chromium` and "
    "`uv pip install --python .venv/bin/python playwright` (never `playwright install`)"
)


@pytest.fixture(scope="session")
def playwright_browser() -> Iterator[Any]:
    """Debian's Chromium under Playwright; a clear failure (never a skip) when either is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"the Playwright Python package is not installed: {INSTALL}")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: {INSTALL}")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(app: Any) -> Iterator[str]:
    """The test's app served by uvicorn on 127.0.0.1 and a free port; yields the base URL."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the gateway did not start under uvicorn")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=15)


@dataclass
class Browser:
    """One signed-in (or anonymous) browser context, with a screenshot helper."""

    base: str
    context: Any
    page: Any
    role: str

    def go(self, path: str) -> Any:
        resp = self.page.goto(self.base + path)
        return resp

    def sign_in(self, token: str) -> None:
        self.go("/login")
        self.page.get_by_label("API 令牌").fill(token)
        self.page.get_by_role("button", name="登录").click()
        self.page.wait_for_load_state()
        assert "/login" not in self.page.url, self.page.content()[:2000]

    def shot(self, name: str) -> None:
        """Desktop and phone-width screenshots of the current page, for people to look at."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
        self.page.set_viewport_size(PHONE)
        self.page.screenshot(path=str(SHOTS / f"{name}.phone.png"), full_page=True)
        self.page.set_viewport_size(DESKTOP)


@pytest.fixture
def open_browser(playwright_browser: Any, live_server: str) -> Iterator[Any]:
    """Factory: open_browser(role) -> a fresh context (own cookies) on the live server."""
    contexts: list[Any] = []

    def make(role: str = "public") -> Browser:
        ctx = playwright_browser.new_context(viewport=DESKTOP, accept_downloads=True, locale="zh-CN")
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(20_000)
        return Browser(base=live_server, context=ctx, page=page, role=role)

    yield make
    for ctx in contexts:
        ctx.close()


@pytest.fixture(scope="session", autouse=True)
def _small_sandbox_runner() -> Iterator[None]:
    """One small warm sandbox worker for the browser tests' queries."""
    from sandbox import queries
    from sandbox.runner import Limits, SandboxRunner

    queries._RUNNER = SandboxRunner(Limits(timeout_s=10.0, memory_mb=512, threads=1, max_rows=5000))
    yield
    queries.shutdown_runner()
