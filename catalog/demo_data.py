"""Sample base libraries for the embedded demo: registered and published once, through the services."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from catalog import publish, samples, service
from catalog.models import Dataset
from catalog.schemas import DatasetCreate
from common.actor import Actor

# library -> (owning department, rows)
LIBRARY_OWNERS = {
    "population": ("510100-GA", 5000),
    "legal_person": ("510100-SCJG", 3000),
    "geospatial": ("510100-GH", 2000),
    "certificate": ("510100-ZWFW", 3000),
}


def registration(library: str) -> DatasetCreate:
    """The registration body for a sample library."""
    reg = samples.registration_for(library)
    contact = reg.get("contact")
    if isinstance(contact, dict):
        contact = " ".join(str(v) for v in contact.values())
    schema = reg["schema"]
    return DatasetCreate.model_validate(
        {
            k: v
            for k, v in {
                **reg,
                "contact": contact,
                "fields": schema["fields"],
                "key": schema.get("key"),
            }.items()
            if k in DatasetCreate.model_fields
        }
    )


def load(
    *,
    uow: Callable[[], AbstractContextManager[Session]],
    data_dir: Path,
    keyring: Any,
    rows: dict[str, int] | None = None,
) -> list[str]:
    """Register and publish every sample library that is not live yet; returns the dataset codes."""
    codes = []
    for library, (org, default_rows) in LIBRARY_OWNERS.items():
        with uow() as s:
            actor = department_actor(s, org)
        body = registration(library)
        with uow() as s:
            ds = s.exec(select(Dataset).where(Dataset.code == body.code)).first()
            if ds is None:
                ds = service.register(s, actor=actor, data=body)
            live = ds.current_version is not None
        if not live:
            with tempfile.TemporaryDirectory() as tmp:
                n = (rows or {}).get(library, default_rows)
                path = samples.write(samples.generate(library, n), Path(tmp) / f"{library}.csv")
                publish.publish(
                    uow,
                    actor=actor,
                    code=body.code,
                    upload=publish.Upload(path=path, fmt="csv"),
                    data_dir=data_dir,
                    keyring=keyring,
                )
        codes.append(body.code)
    return codes


def department_actor(s: Session, org: str) -> Actor:
    """The first department principal of `org`, acting."""
    import identity

    row = s.exec(
        select(identity.Principal, identity.Organisation)
        .join(identity.Organisation, col(identity.Organisation.id) == col(identity.Principal.org_id))
        .where(identity.Organisation.code == org, identity.Principal.role == "department")
    ).first()
    if row is None:
        raise RuntimeError(f"demo: no department principal in {org}")
    p, o = row
    return Actor(principal=p.code, role="department", org=o.code, name=p.name)
