"""Administration over HTTP: organisations, principals, tokens. Same services as `pdg admin`."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

import identity
from gateway.deps import PrincipalCtxDep

router = APIRouter()


class OrganisationIn(BaseModel):
    code: str = Field(min_length=2, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    kind: str
    sm2_public_key_pem: str | None = Field(default=None, max_length=4096)


class OrganisationOut(BaseModel):
    code: str
    name: str
    kind: str
    status: str


class PrincipalIn(BaseModel):
    org: str
    role: str
    name: str = Field(min_length=1, max_length=200)
    expires_in_days: int | None = Field(default=365, ge=1, le=3650)


class PrincipalOut(BaseModel):
    principal: str
    role: str
    org: str
    token: str = Field(description="Shown once; store it now. Only its hash is kept.")


@router.post("/organisations", status_code=status.HTTP_201_CREATED, response_model=OrganisationOut)
def create_organisation(body: OrganisationIn, c: PrincipalCtxDep) -> OrganisationOut:
    with c.uow() as s:
        org = identity.create_organisation(
            s,
            actor=c.actor,
            code=body.code,
            name=body.name,
            kind=body.kind,
            sm2_public_key_pem=body.sm2_public_key_pem,
        )
        return OrganisationOut(code=org.code, name=org.name, kind=org.kind, status=org.status)


@router.post("/principals", status_code=status.HTTP_201_CREATED, response_model=PrincipalOut)
def create_principal(body: PrincipalIn, c: PrincipalCtxDep) -> PrincipalOut:
    expires = timedelta(days=body.expires_in_days) if body.expires_in_days else None
    with c.uow() as s:
        p, token = identity.create_principal(
            s, actor=c.actor, org_code=body.org, role=body.role, name=body.name, expires_in=expires
        )
        return PrincipalOut(principal=p.code, role=p.role, org=body.org, token=token)


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(token_id: str, c: PrincipalCtxDep) -> None:
    with c.uow() as s:
        identity.revoke_token(s, actor=c.actor, token_id=token_id)


me_router = APIRouter()


class MeOut(BaseModel):
    principal: str
    role: str
    org: str | None
    name: str


@me_router.get("/me", response_model=MeOut, summary="Who the bearer token stands for")
def me(c: PrincipalCtxDep) -> MeOut:
    return MeOut(principal=c.actor.principal, role=c.actor.role, org=c.actor.org, name=c.actor.name)
