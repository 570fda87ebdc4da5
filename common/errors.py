"""Domain exceptions. Services raise these; `gateway/errors.py` maps them to problem+json once."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error a caller can cause. `detail` says what to fix; never a secret or row value."""

    status = 400
    type_slug = "invalid"
    title = "Invalid request"

    def __init__(self, detail: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}


class Invalid(DomainError):
    """The input breaks a rule; `extra` may carry a structured report (e.g. rejected rows)."""

    status = 422
    type_slug = "invalid"
    title = "Invalid input"


class BadRequest(DomainError):
    status = 400
    type_slug = "bad-request"
    title = "Bad request"


class Unauthenticated(DomainError):
    status = 401
    type_slug = "unauthenticated"
    title = "Authentication required"


class Denied(DomainError):
    """The decision point said no. `decision` is the policies.Decision that said so."""

    status = 403
    type_slug = "denied"
    title = "Access denied"

    def __init__(self, detail: str, *, decision: Any = None, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail, extra=extra)
        self.decision = decision


class NotFound(DomainError):
    status = 404
    type_slug = "not-found"
    title = "Not found"


class Conflict(DomainError):
    status = 409
    type_slug = "conflict"
    title = "Conflict"


class Gone(DomainError):
    status = 410
    type_slug = "gone"
    title = "Gone"


class TooLarge(DomainError):
    status = 413
    type_slug = "too-large"
    title = "Payload too large"


class Unsupported(DomainError):
    status = 415
    type_slug = "unsupported-media-type"
    title = "Unsupported media type"


class RateLimited(DomainError):
    status = 429
    type_slug = "rate-limited"
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, extra={"retry_after": retry_after})
        self.retry_after = retry_after


class InsufficientStorage(DomainError):
    status = 507
    type_slug = "insufficient-storage"
    title = "Insufficient storage"


class Timeout(DomainError):
    """A bounded operation (e.g. a sandbox query) ran past its limit; the caller should narrow it."""

    status = 408
    type_slug = "timeout"
    title = "Operation timed out"
