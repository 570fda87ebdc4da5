"""Who is acting: built by the gateway from a token (or the CLI), passed to every service call."""

from __future__ import annotations

from dataclasses import dataclass, field

ROLES = ("public", "department", "operator", "enterprise", "auditor", "admin")


@dataclass(frozen=True)
class Actor:
    """A principal acting now. `org` is the organisation code; `public` actors have none."""

    principal: str
    role: str
    org: str | None = None
    name: str = ""
    scopes: frozenset[str] = field(default_factory=frozenset)
    client_addr: str | None = None
    request_id: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; one of {', '.join(ROLES)}")

    @classmethod
    def public(cls, *, client_addr: str | None = None, request_id: str | None = None) -> Actor:
        return cls(principal="public", role="public", client_addr=client_addr, request_id=request_id)

    @classmethod
    def system(cls, name: str = "system") -> Actor:
        """The gateway itself (startup loaders, timers): an admin principal with no organisation."""
        return cls(principal=f"system:{name}", role="admin", org=None, name=name)
