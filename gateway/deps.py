"""Request dependencies: the app state, the acting principal, and a unit of work per call.

They are `async def`: FastAPI runs a sync dependency on a worker thread, one hand-off each. The rule that
keeps the event loop free: only work that cannot wait runs here (header parsing, the in-process rate
limiter's dict under its lock); anything that can wait on the database, a lock or a commit (the token
lookup, the lockout's audit record) goes to the thread pool.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session

import identity
from common.actor import Actor
from common.errors import Denied, RateLimited, Unauthenticated
from gateway.db import unit_of_work
from gateway.state import AppState


async def get_state(request: Request) -> AppState:
    return request.app.state.pdg


StateDep = Annotated[AppState, Depends(get_state)]


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def current_actor(request: Request, state: StateDep) -> Actor:
    """The caller: a principal from `Authorization: Bearer`, or the rate-limited anonymous public."""
    client = _client(request)
    rid = getattr(request.state, "request_id", None)
    limits = state.settings.limits
    header = request.headers.get("authorization")
    if not header:
        wait = state.limiter.hit(f"anon:{client}", limits.anonymous_per_minute)
        if wait:
            raise RateLimited("anonymous rate limit reached; wait or use an API token", retry_after=wait)
        return Actor.public(client_addr=client, request_id=rid)
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("use `Authorization: Bearer <token>`")
    if state.limiter.hit(f"authfail:{client}", limits.auth_failures_per_minute, count=False):
        await run_in_threadpool(_audit_lockout, state, client, rid, limits.auth_failures_per_minute)
        raise RateLimited(
            "too many failed sign-ins from this address; wait before trying again",
            retry_after=state.limiter.retry_after(f"authfail:{client}"),
        )
    try:
        actor = await run_in_threadpool(_authenticate, state, token.strip(), client, rid)
    except Unauthenticated:
        state.limiter.hit(f"authfail:{client}", limits.auth_failures_per_minute)
        raise
    wait = state.limiter.hit(f"tok:{actor.principal}", limits.token_per_minute)
    if wait:
        raise RateLimited("rate limit for this token reached", retry_after=wait)
    return actor


def _authenticate(state: AppState, token: str, client: str, rid: str | None) -> Actor:
    with unit_of_work(state.engine, read=True) as session:
        return identity.authenticate(session, token, client_addr=client, request_id=rid)


def _audit_lockout(state: AppState, client: str, rid: str | None, limit: int) -> None:
    """One `auth:rate_limited` record per address and window, not one per refused attempt (an attacker
    must not be able to flood the log)."""
    if state.limiter.hit(f"authfail-logged:{client}", 1):
        return
    import audit

    with unit_of_work(state.engine) as session:
        audit.record(
            session,
            actor=Actor.public(client_addr=client, request_id=rid),
            action="auth:rate_limited",
            resource_type="address",
            resource_id=client,
            allowed=False,
            reasons=["auth.too_many_failures"],
            outcome={"failures": limit, "window_seconds": int(state.limiter.window)},
        )


ActorDep = Annotated[Actor, Depends(current_actor)]


async def require_principal(actor: ActorDep) -> Actor:
    """Endpoints that make no sense anonymously ask for a token before the decision point."""
    if actor.role == "public":
        raise Unauthenticated("this endpoint needs an API token: `Authorization: Bearer <token>`")
    return actor


PrincipalDep = Annotated[Actor, Depends(require_principal)]


@dataclass
class Ctx:
    """What a handler needs: the state and the actor; `uow()` opens one transaction."""

    state: AppState
    actor: Actor

    @contextmanager
    def uow(self, *, read: bool = False) -> Iterator[Session]:
        """A unit of work; `read=True` for requests that change nothing but the audit log."""
        with unit_of_work(self.state.engine, read=read) as session:
            yield session


async def ctx(state: StateDep, actor: ActorDep) -> Ctx:
    return Ctx(state=state, actor=actor)


async def principal_ctx(state: StateDep, actor: PrincipalDep) -> Ctx:
    return Ctx(state=state, actor=actor)


CtxDep = Annotated[Ctx, Depends(ctx)]
PrincipalCtxDep = Annotated[Ctx, Depends(principal_ctx)]

__all__ = ["ActorDep", "Ctx", "CtxDep", "Denied", "PrincipalCtxDep", "PrincipalDep", "StateDep"]

# Path ids: positive and within a 64-bit integer, so no database driver ever overflows on them.
Id = Annotated[int, Path(ge=1, le=2**63 - 1, description="a positive integer id")]
