"""Enterprise onboarding by the operator: the organisation, its registered SM2 public key, its status."""

from __future__ import annotations

import re
from typing import Any

from sqlmodel import Session, select

import identity
from common import clock
from common.actor import Actor
from common.errors import Conflict, Invalid
from gmcrypto.errors import CryptoError
from gmcrypto.sm2 import PublicKey
from policies import resources
from policies.guard import authorized

CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$")
STATUSES = ("active", "suspended")
MAX_PEM = 4096


def check_public_key(pem: str) -> PublicKey:
    """An SM2 public key (PEM SubjectPublicKeyInfo) whose point is on the SM2 curve, or Invalid."""
    if not isinstance(pem, str) or not pem.strip() or len(pem) > MAX_PEM:
        raise Invalid(
            "sm2_public_key_pem: send the enterprise's SM2 public key as PEM "
            "(-----BEGIN PUBLIC KEY-----, e.g. from `pdg keys generate`)"
        )
    try:
        return PublicKey.from_pem(pem.strip().encode())
    except (CryptoError, ValueError):
        raise Invalid(
            "sm2_public_key_pem: not an SM2 public key on the SM2 curve (generate one with `pdg keys generate`)"
        ) from None


def onboard_enterprise(
    session: Session,
    *,
    actor: Actor,
    code: str,
    name: str,
    public_key_pem: str,
    status: str = "active",
    principal_name: str | None = None,
) -> tuple[identity.Organisation, str | None, str | None]:
    """Create or update an enterprise with its SM2 key and status; optionally its first principal.

    Returns (organisation, principal code, token); the token is shown once.
    """
    with authorized(
        session,
        actor,
        "enterprise:onboard",
        resources.organisation(code, "enterprise"),
        resource_type="organisation",
        resource_id=code,
    ) as act:
        if not CODE_RE.match(code or ""):
            raise Invalid("code: 2-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        if not (name or "").strip() or len(name) > 200:
            raise Invalid("name: the enterprise's registered name, 1..200 characters")
        if status not in STATUSES:
            raise Invalid(f"status must be one of {', '.join(STATUSES)}")
        key = check_public_key(public_key_pem)
        org = session.exec(select(identity.Organisation).where(identity.Organisation.code == code)).first()
        created = org is None
        if org is None:
            org = identity.Organisation(
                code=code,
                name=name.strip(),
                kind="enterprise",
                status=status,
                sm2_public_key_pem=key.to_pem().decode(),
                created_at=clock.now(),
            )
        elif org.kind != "enterprise":
            raise Conflict(f"organisation {code!r} is a {org.kind}, not an enterprise")
        else:
            org.name, org.status, org.sm2_public_key_pem = name.strip(), status, key.to_pem().decode()
        session.add(org)
        session.flush()
        principal = token = None
        if principal_name:
            p, token = identity.create_principal(
                session, actor=actor, org_code=code, role="enterprise", name=principal_name
            )
            principal = p.code
        act.outcome.update({"created": created, "status": status, "key_id": key.key_id, "principal": principal})
    return org, principal, token


def list_enterprises(session: Session, *, actor: Actor) -> list[identity.Organisation]:
    """The onboarded enterprises (operator, admin): one decision, one audit record."""
    with authorized(
        session,
        actor,
        "enterprise:list",
        resources.organisation("*", "enterprise"),
        resource_type="organisation",
        resource_id="enterprises",
    ) as act:
        orgs = list(
            session.exec(
                select(identity.Organisation)
                .where(identity.Organisation.kind == "enterprise")
                .order_by(identity.Organisation.code)
            ).all()
        )
        act.outcome.update({"count": len(orgs)})
    return orgs


def to_out(org: Any) -> dict[str, Any]:
    key_id = PublicKey.from_pem(org.sm2_public_key_pem.encode()).key_id if org.sm2_public_key_pem else None
    return {"code": org.code, "name": org.name, "kind": org.kind, "status": org.status, "key_id": key_id}
