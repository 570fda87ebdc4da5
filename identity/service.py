"""Identity services: organisations, principals, tokens. Every change asks the decision point first."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from common import clock
from common.actor import ROLES, Actor
from common.errors import Conflict, Invalid, NotFound, Unauthenticated
from identity import tokens
from identity.models import ORG_KINDS, ApiToken, Organisation, Principal
from policies import resources
from policies.guard import authorized

_CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,63}$")
# Which kinds of organisation each role may belong to.
ROLE_ORG_KINDS = {
    "department": {"department"},
    "operator": {"operator"},
    "enterprise": {"enterprise"},
    "auditor": {"audit_office"},
    "admin": {"admin", "operator"},
}


def get_organisation(session: Session, code: str) -> Organisation:
    org = session.exec(select(Organisation).where(Organisation.code == code)).first()
    if org is None:
        raise NotFound(f"no organisation with code {code!r}")
    return org


def create_organisation(
    session: Session, *, actor: Actor, code: str, name: str, kind: str, sm2_public_key_pem: str | None = None
) -> Organisation:
    """Register an organisation (department, enterprise, operator, audit office)."""
    with authorized(
        session,
        actor,
        "organisation:create",
        resources.organisation(code, kind),
        resource_type="organisation",
        resource_id=code,
    ):
        if not _CODE_RE.match(code):
            raise Invalid(
                "organisation code: 2-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        if kind not in ORG_KINDS:
            raise Invalid(f"organisation kind must be one of {', '.join(ORG_KINDS)}")
        if not name.strip():
            raise Invalid("organisation name must not be empty")
        if session.exec(select(Organisation).where(Organisation.code == code)).first():
            raise Conflict(f"organisation {code!r} already exists")
        org = Organisation(
            code=code,
            name=name.strip(),
            kind=kind,
            sm2_public_key_pem=sm2_public_key_pem,
            created_at=clock.now(),
        )
        session.add(org)
        session.flush()
        return org


def create_principal(
    session: Session,
    *,
    actor: Actor,
    org_code: str,
    role: str,
    name: str,
    expires_in: timedelta | None = timedelta(days=365),
) -> tuple[Principal, str]:
    """Create a principal in an organisation and issue its first token (returned once, in plaintext)."""
    org = get_organisation(session, org_code)
    with authorized(
        session,
        actor,
        "principal:create",
        resources.organisation(org.code, org.kind),
        resource_type="organisation",
        resource_id=org.code,
    ) as act:
        if role not in ROLES or role == "public":
            raise Invalid(f"role must be one of {', '.join(r for r in ROLES if r != 'public')}")
        if org.kind not in ROLE_ORG_KINDS[role]:
            raise Invalid(
                f"a {role} must belong to a {' or '.join(sorted(ROLE_ORG_KINDS[role]))} organisation, "
                f"not a {org.kind}"
            )
        if not name.strip():
            raise Invalid("principal name must not be empty")
        principal = Principal(
            code=f"p-{secrets.token_hex(6)}",
            name=name.strip(),
            role=role,
            org_id=org.id,
            created_at=clock.now(),
        )
        session.add(principal)
        session.flush()
        plaintext = _issue(session, principal, expires_in=expires_in, scopes=[])
        act.outcome["principal"] = principal.code
    return principal, plaintext


def issue_token(
    session: Session,
    *,
    actor: Actor,
    principal_code: str,
    expires_in: timedelta | None,
    scopes: list[str] | None = None,
) -> str:
    """Issue another token to an existing principal."""
    principal, org = _principal_and_org(session, principal_code)
    with authorized(
        session,
        actor,
        "token:issue",
        resources.organisation(org.code, org.kind),
        resource_type="principal",
        resource_id=principal.code,
    ):
        return _issue(session, principal, expires_in=expires_in, scopes=scopes or [])


def revoke_token(session: Session, *, actor: Actor, token_id: str) -> None:
    """Revoke a token at once (by its public id)."""
    tok = session.exec(select(ApiToken).where(ApiToken.token_id == token_id)).first()
    if tok is None:
        raise NotFound(f"no token with id {token_id!r}")
    principal = session.get(Principal, tok.principal_id)
    org = session.get(Organisation, principal.org_id) if principal and principal.org_id else None
    with authorized(
        session,
        actor,
        "token:revoke",
        resources.organisation(org.code if org else "", org.kind if org else "admin"),
        resource_type="token",
        resource_id=token_id,
    ):
        if tok.revoked_at is None:
            tok.revoked_at = clock.now()
            session.add(tok)


def authenticate(
    session: Session, token: str, *, client_addr: str | None = None, request_id: str | None = None
) -> Actor:
    """The actor a bearer token stands for; Unauthenticated for garbage, unknown, expired or revoked tokens."""
    parsed = tokens.parse(token)
    if parsed is None:
        raise Unauthenticated("the bearer token is malformed; use the token printed when it was issued")
    token_id, secret = parsed
    row = session.exec(
        select(ApiToken, Principal, Organisation)
        .join(Principal, col(Principal.id) == col(ApiToken.principal_id))
        .join(Organisation, col(Organisation.id) == col(Principal.org_id), isouter=True)
        .where(ApiToken.token_id == token_id)
    ).first()
    # Same message for every failure: no oracle telling which tokens exist.
    failure = Unauthenticated("the bearer token is unknown, expired or revoked")
    if row is None:
        tokens.secret_matches(secret, "0" * 64)  # spend the same time as a real comparison
        raise failure
    tok, principal, org = row
    if not tokens.secret_matches(secret, tok.secret_hash):
        raise failure
    now = clock.now()
    if tok.revoked_at is not None or (tok.expires_at is not None and clock.as_utc(tok.expires_at) <= now):
        raise failure
    if principal.status != "active" or (org is not None and org.status != "active"):
        raise failure
    return Actor(
        principal=principal.code,
        role=principal.role,
        org=org.code if org else None,
        name=principal.name,
        scopes=frozenset(tok.scopes),
        client_addr=client_addr,
        request_id=request_id,
    )


def _principal_and_org(session: Session, principal_code: str) -> tuple[Principal, Organisation]:
    principal = session.exec(select(Principal).where(Principal.code == principal_code)).first()
    if principal is None or principal.org_id is None:
        raise NotFound(f"no principal with code {principal_code!r}")
    org = session.get(Organisation, principal.org_id)
    assert org is not None
    return principal, org


def _issue(session: Session, principal: Principal, *, expires_in: timedelta | None, scopes: list[str]) -> str:
    new = tokens.new_token()
    expires_at: datetime | None = clock.now() + expires_in if expires_in else None
    session.add(
        ApiToken(
            token_id=new.token_id,
            secret_hash=new.secret_hash,
            principal_id=principal.id or 0,
            scopes=scopes,
            created_at=clock.now(),
            expires_at=expires_at,
        )
    )
    session.flush()
    return new.plaintext
