"""Page plumbing: the `Web` request context (actor, language, session), templates, and HTML errors.

Handlers take `w: WebDep` and return `w.render(...)` or `w.redirect(...)`. Routers use `WebRoute`, which
turns every DomainError into a friendly HTML page with the same status (401 becomes a redirect to the
sign-in page), so pages never show problem+json.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlmodel import Session

import identity
from common.actor import Actor
from common.errors import Denied, DomainError, RateLimited, Unauthenticated
from gateway.db import unit_of_work
from gateway.state import AppState
from gateway.web import i18n, nav
from gateway.web import session as sess

log = logging.getLogger("pdg.web")
SHANGHAI = ZoneInfo("Asia/Shanghai")
_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _local(value: Any) -> str:
    """Times are stored in UTC and shown in Asia/Shanghai."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if value.tzinfo is None:
        from datetime import UTC

        value = value.replace(tzinfo=UTC)
    return value.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


_env.filters["local"] = _local
_env.filters["urlq"] = lambda v: quote(str(v), safe="")


class CsrfFailed(Denied):
    """A form came without the session's CSRF token (e.g. from another site, or a stale page)."""

    type_slug = "csrf"


@dataclass
class Web:
    """One page request: the state, the actor (public when signed out), the session and the language."""

    request: Request
    state: AppState
    actor: Actor
    session: sess.WebSession
    lang: str
    set_cookies: dict[str, str] = field(default_factory=dict)

    @contextmanager
    def uow(self, *, read: bool = False) -> Iterator[Session]:
        """A unit of work; `read=True` for pages that change nothing but the audit log (no write lock)."""
        with unit_of_work(self.state.engine, read=read) as s:
            yield s

    def t(self, key: str, **kw: Any) -> str:
        return i18n.t(self.lang, key, **kw)

    def can(self, action: str, resource: Any, context: Any = None) -> bool:
        return nav.can(self.actor, action, resource, context)

    def start_session(self, new: sess.WebSession) -> None:
        """Replace the session (sign-in, sign-out): a new CSRF token every time."""
        self.session = new
        self.set_cookies[sess.COOKIE] = sess.seal(new, self.state.secret_key)

    def context(self, **extra: Any) -> dict[str, Any]:
        return {
            "w": self,
            "t": self.t,
            "lang": self.lang,
            "actor": self.actor,
            "csrf": self.session.csrf,
            "nav": nav.items(self.actor),
            "path": self.request.url.path,
            "query": str(self.request.url.query),
            **extra,
        }

    def html(self, template: str, **extra: Any) -> str:
        return _env.get_template(template).render(self.context(**extra))

    def render(self, template: str, *, status: int = 200, **extra: Any) -> HTMLResponse:
        return self.finish(HTMLResponse(self.html(template, **extra), status_code=status))

    def redirect(self, url: str) -> RedirectResponse:
        return self.finish(RedirectResponse(url, status_code=303))

    def finish(self, response: Response) -> Response:
        secure = self.state.settings.tls_terminated
        for name, value in self.set_cookies.items():
            if name == sess.COOKIE:
                response.set_cookie(
                    name, value, max_age=sess.MAX_AGE, httponly=True, samesite="lax", secure=secure, path="/"
                )
            else:
                response.set_cookie(name, value, max_age=365 * 86400, samesite="lax", secure=secure, path="/")
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
        )
        return response

    async def form(self) -> dict[str, Any]:
        """The posted form, after checking its CSRF token (field `csrf` or header X-CSRF-Token)."""
        form = await self.request.form(max_files=1, max_fields=200)
        submitted = form.get("csrf") or self.request.headers.get("x-csrf-token")
        if not sess.csrf_ok(self.session, submitted if isinstance(submitted, str) else None):
            await form.close()
            raise CsrfFailed("the form's security token is missing or out of date; reload the page and try again")
        out: dict[str, Any] = {}
        for k, v in form.multi_items():
            out.setdefault(k, []).append(v)
        return {k: v[0] if len(v) == 1 else v for k, v in out.items()}


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def pick_lang(request: Request) -> tuple[str, bool]:
    """?lang= switches and remembers; else the cookie; Chinese by default."""
    asked = request.query_params.get("lang")
    if asked in i18n.LANGS:
        return asked, asked != request.cookies.get(sess.LANG_COOKIE)
    cookie = request.cookies.get(sess.LANG_COOKIE)
    return (cookie if cookie in i18n.LANGS else i18n.DEFAULT), False


def web_context(request: Request) -> Web:
    """Build the page context: language, session (a fresh anonymous one at first visit) and actor."""
    state: AppState = request.app.state.pdg
    lang, remember = pick_lang(request)
    client = _client(request)
    rid = getattr(request.state, "request_id", None)
    found = sess.unseal(request.cookies.get(sess.COOKIE), state.secret_key)
    actor = Actor.public(client_addr=client, request_id=rid)
    w = Web(request=request, state=state, actor=actor, session=found or sess.new_session(), lang=lang)
    if remember:
        w.set_cookies[sess.LANG_COOKIE] = lang
    if found is None:
        w.start_session(w.session)
    elif found.token:
        try:
            with unit_of_work(state.engine) as s:
                w.actor = identity.authenticate(s, found.token, client_addr=client, request_id=rid)
        except Unauthenticated:
            w.start_session(sess.new_session())  # the token expired or was revoked: signed out
    if w.actor.role != "public":
        wait = state.limiter.hit(f"tok:{w.actor.principal}", state.settings.limits.token_per_minute)
        if wait:
            raise RateLimited("rate limit for this token reached", retry_after=wait)
    request.state.web = w
    return w


WebDep = Annotated[Web, Depends(web_context)]


def require_signed_in(w: Web) -> None:
    if w.actor.role == "public":
        raise Unauthenticated("sign in with your API token to see this page")


def error_page(request: Request, exc: DomainError) -> Response:
    """A friendly page with the error's status; 401 sends the browser to the sign-in page."""
    w: Web | None = getattr(request.state, "web", None)
    if w is None:
        try:
            w = web_context(request)
        except DomainError:
            lang, _ = pick_lang(request)
            body = f"<!doctype html><html lang='{lang}'><title>{exc.status}</title><p>{exc.title}</p></html>"
            return HTMLResponse(body, status_code=exc.status)
    if isinstance(exc, Unauthenticated) and request.method == "GET":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return w.redirect("/login?next=" + quote(target, safe=""))
    headers = {"Retry-After": str(exc.extra["retry_after"])} if "retry_after" in exc.extra else {}
    resp = w.render("error.html", status=exc.status, exc=exc, kind=exc.type_slug)
    resp.headers.update(headers)
    return resp


class WebRoute(APIRoute):
    """A route whose errors are HTML pages."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except DomainError as exc:
                return error_page(request, exc)
            except RequestValidationError as exc:
                from common.errors import Invalid

                first = exc.errors()[0] if exc.errors() else {}
                where = ".".join(str(p) for p in first.get("loc", ()))
                return error_page(request, Invalid(f"{where}: {first.get('msg', 'invalid')}"))

        return handler
