"""Pure-ASGI middleware: request ids, body-size limits, access logs and metrics.

Pure ASGI (not BaseHTTPMiddleware) so streamed downloads pass through untouched and in constant memory.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from gateway import metrics
from gateway.errors import PROBLEM_BASE, PROBLEM_MEDIA_TYPE

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
access_log = logging.getLogger("pdg.access")


class BodyTooLarge(Exception):
    pass


def problem_bytes(status: int, slug: str, title: str, detail: str, request_id: str | None, path: str) -> bytes:
    return json.dumps(
        {
            "type": PROBLEM_BASE + slug,
            "title": title,
            "status": status,
            "detail": detail,
            "instance": path,
            "request_id": request_id,
        }
    ).encode()


async def send_problem(
    send: Send,
    status: int,
    slug: str,
    title: str,
    detail: str,
    request_id: str | None,
    path: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = problem_bytes(status, slug, title, detail, request_id, path)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                *([(b"x-request-id", request_id.encode())] if request_id else []),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _too_large(limit: int) -> str:
    return f"the body exceeds the limit of {limit} bytes for this endpoint"


class GatewayMiddleware:
    """Request id, size limits, one JSON access-log line and metrics per request."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_json_bytes: int,
        max_upload_bytes: int,
        upload_path: re.Pattern[str],
        max_header_bytes: int = 16 * 1024,
    ) -> None:
        self.app = app
        self.max_header = max_header_bytes
        self.max_json = max_json_bytes
        self.max_upload = max_upload_bytes
        self.upload_path = upload_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if _SAFE_ID.match(incoming) else secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = rid
        path = scope.get("path", "")
        limit = self.max_upload if self.upload_path.search(path) else self.max_json
        started = time.perf_counter()
        status_holder = {"status": 500}
        if "\x00" in path or b"%00" in scope.get("query_string", b"") or b"%00" in (scope.get("raw_path") or b""):
            # No name or filter the gateway knows contains NUL; databases refuse it, file systems misread it.
            await send_problem(
                send, 400, "bad-request", "Bad request", "the URL contains a NUL character (%00); remove it", rid, path
            )
            self._log(scope, 400, started, rid)
            return

        head = sum(len(k) + len(v) + 4 for k, v in scope.get("headers") or [])
        if head > self.max_header:
            # The ASGI server parsed them already; refusing still stops them reaching logs and handlers.
            await send_problem(
                send,
                431,
                "headers-too-large",
                "Request header fields too large",
                f"the request headers total {head} bytes; the limit is {self.max_header}",
                rid,
                path,
            )
            self._log(scope, 431, started, rid)
            return

        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                await send_problem(send, 400, "bad-request", "Bad request", "Content-Length is not a number", rid, path)
                return
            if too_big:
                await send_problem(
                    send,
                    413,
                    "too-large",
                    "Payload too large",
                    f"the body exceeds the limit of {limit} bytes for this endpoint",
                    rid,
                    path,
                )
                self._log(scope, 413, started, rid)
                return

        received = 0
        exceeded = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge
            return message

        response_started = False
        replaced = False

        async def tracking_send(message: Message) -> None:
            nonlocal response_started, replaced
            if exceeded and not response_started:
                # FastAPI turns any error while reading a body into "400 error parsing the body": the
                # caller deserves the real reason (streamed bodies have no Content-Length to refuse early).
                replaced = response_started = True
                status_holder["status"] = 413
                await send_problem(send, 413, "too-large", "Payload too large", _too_large(limit), rid, path)
                return
            if replaced:
                return
            if message["type"] == "http.response.start":
                response_started = True
                status_holder["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not response_started:
                await send_problem(
                    send,
                    413,
                    "too-large",
                    "Payload too large",
                    f"the body exceeds the limit of {limit} bytes for this endpoint",
                    rid,
                    path,
                )
            status_holder["status"] = 413
        finally:
            self._log(scope, status_holder["status"], started, rid)

    @staticmethod
    def _log(scope: Scope, status: int, started: float, rid: str) -> None:
        elapsed = time.perf_counter() - started
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        metrics.observe_request(scope.get("method", ""), template, status, elapsed)
        # Path only: query strings can carry filter values, i.e. row data; tokens never reach logs.
        access_log.info(
            "request",
            extra={
                "request_id": rid,
                "method": scope.get("method"),
                "route": template,
                "status": status,
                "ms": round(elapsed * 1000, 2),
                "client": (scope.get("client") or ("", 0))[0],
            },
        )
