"""Catalog services: register, update and read datasets. Each asks the decision point first."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from catalog import storage
from catalog.fields import Schema
from catalog.models import Dataset, DatasetVersion
from catalog.schemas import DatasetCreate, DatasetOut, DatasetUpdate, VersionOut
from common import clock
from common.actor import Actor
from common.errors import Conflict, Invalid, NotFound
from policies import resources, vocabulary
from policies.guard import authorized

ACCESS_HINT = {"unconditional": "open", "conditional": "apply", "closed": "owner-only"}


def grade_level(code: str) -> int:
    """'G3' -> 3."""
    return int(code.lstrip("G"))


def get(session: Session, code: str, *, for_update: bool = False) -> Dataset:
    """The dataset with this code, or NotFound (also for codes that could never exist)."""
    stmt = select(Dataset).where(Dataset.code == code)
    if for_update:
        stmt = stmt.with_for_update(key_share=True)  # FOR NO KEY UPDATE: FK checks of child rows go on
    ds = session.exec(stmt).first()
    if ds is None:
        raise NotFound(f"no dataset with code {code!r}")
    return ds


def _grade(schema: Schema, open_type: str, share_type: str) -> tuple[str, list[str]]:
    """The dataset's grade and reasons; Invalid for unknown tags or types that do not fit the grade."""
    pairs = [(f.name, f.tag) for f in schema.fields]
    vocab = vocabulary.default()
    unknown = [f for f in schema.fields if f.tag not in vocab.tags]
    if unknown:
        raise Invalid(
            f"field {unknown[0].name!r}: unknown tag {unknown[0].tag!r}; "
            f"one of {', '.join(sorted(vocab.tags))}"
        )
    level, reasons = vocabulary.grade_of_fields(pairs, vocab=vocab)
    problems = vocabulary.check_types(pairs, open_type, share_type, vocab)
    if problems:
        raise Invalid("open/share type does not fit the fields' grades: " + "; ".join(problems))
    return vocab.grade_code(level), list(reasons)


def _provisional_level(schema: Schema) -> int:
    """The grade to authorise against before validating: unknown tags count as the highest grade."""
    vocab = vocabulary.default()
    return max(
        (vocab.tags[f.tag].grade if f.tag in vocab.tags else vocab.max_level for f in schema.fields),
        default=1,
    )


def _search_text(ds: Dataset) -> str:
    labels = " ".join(f"{f.get('name', '')} {f.get('label', '')}" for f in ds.schema_def.get("fields", []))
    parts = [
        ds.code,
        ds.title,
        ds.title_en or "",
        ds.description,
        ds.description_en or "",
        " ".join(ds.keywords),
        ds.department,
        labels,
    ]
    return " ".join(p for p in parts if p).lower()


def register(session: Session, *, actor: Actor, data: DatasetCreate, org_name: str | None = None) -> Dataset:
    """Register a dataset for the actor's own organisation; its grade is computed from the fields."""
    schema = Schema.parse({"fields": [f.model_dump() for f in data.fields], "key": data.key})
    owner = actor.org or ""
    resource = resources.dataset_attrs(
        code=data.code,
        owner=owner,
        category=data.category,
        grade=_provisional_level(schema),
        open_type=data.open_type,
        share_type=data.share_type,
    )
    with authorized(
        session, actor, "dataset:register", resource, resource_type="dataset", resource_id=data.code
    ) as act:
        storage.check_code(data.code)
        grade, reasons = _grade(schema, data.open_type, data.share_type)
        if session.exec(select(Dataset.id).where(Dataset.code == data.code)).first() is not None:
            raise Conflict(f"dataset {data.code!r} already exists; choose another code or publish a version")
        now = clock.now()
        ds = Dataset(
            code=data.code,
            title=data.title,
            title_en=data.title_en,
            description=data.description,
            description_en=data.description_en,
            category=data.category,
            keywords=data.keywords,
            owner_org=owner,
            department=data.department or org_name or owner,
            update_cycle=data.update_cycle,
            open_type=data.open_type,
            share_type=data.share_type,
            licence=data.licence,
            temporal_coverage=data.temporal_coverage,
            spatial_coverage=data.spatial_coverage,
            contact=data.contact,
            schema_def=schema.model_dump(),
            suite_json=data.expectations,
            grade=grade,
            grade_reasons=reasons,
            created_at=now,
            updated_at=now,
        )
        ds.search_text = _search_text(ds)
        session.add(ds)
        session.flush()
        act.outcome.update({"grade": grade, "fields": len(schema.fields)})
    return ds


def update(session: Session, *, actor: Actor, code: str, data: DatasetUpdate) -> Dataset:
    """Change a dataset's metadata; open/share types are re-checked against its grade."""
    ds = get(session, code, for_update=True)
    with authorized(
        session, actor, "dataset:update", resources.dataset(ds), resource_type="dataset", resource_id=code
    ) as act:
        changes = data.model_dump(exclude_unset=True)
        expectations = changes.pop("expectations", None)
        schema = Schema.parse(ds.schema_def)
        if "open_type" in changes or "share_type" in changes:
            _grade(
                schema, changes.get("open_type") or ds.open_type, changes.get("share_type") or ds.share_type
            )
        for name, value in changes.items():
            if value is not None:
                setattr(ds, name, value)
        if expectations is not None:
            ds.suite_json = expectations
        ds.updated_at = clock.now()
        ds.search_text = _search_text(ds)
        session.add(ds)
        act.outcome["changed"] = sorted(changes) + (["expectations"] if expectations is not None else [])
    return ds


def read(session: Session, *, actor: Actor, code: str) -> Dataset:
    """A dataset's metadata, if the actor may see it (closed datasets stay with their owner)."""
    ds = get(session, code)
    with authorized(
        session,
        actor,
        "dataset:read_metadata",
        resources.dataset(ds),
        resource_type="dataset",
        resource_id=code,
    ):
        return ds


def versions(session: Session, *, actor: Actor, code: str) -> list[DatasetVersion]:
    ds = get(session, code)
    with authorized(
        session,
        actor,
        "dataset:read_metadata",
        resources.dataset(ds),
        resource_type="dataset",
        resource_id=code,
    ) as act:
        rows = list(
            session.exec(
                select(DatasetVersion)
                .where(DatasetVersion.dataset_id == ds.id)
                .order_by(col(DatasetVersion.number).desc())
            ).all()
        )
        act.outcome["versions"] = len(rows)
        return rows


def version(session: Session, ds: Dataset, number: int) -> DatasetVersion:
    v = session.exec(
        select(DatasetVersion).where(DatasetVersion.dataset_id == ds.id, DatasetVersion.number == number)
    ).first()
    if v is None:
        raise NotFound(f"dataset {ds.code!r} has no version {number}")
    return v


def quality(session: Session, *, actor: Actor, code: str, number: int) -> dict[str, Any]:
    """A version's quality and conformance reports (failing-row samples are masked)."""
    ds = get(session, code)
    with authorized(
        session,
        actor,
        "dataset:read_quality",
        resources.dataset(ds),
        resource_type="dataset",
        resource_id=code,
    ) as act:
        v = version(session, ds, number)
        act.dataset_version = number
        return {"dataset": code, "version": number, "quality": v.quality, "conformance": v.conformance}


def to_out(ds: Dataset) -> DatasetOut:
    return DatasetOut(
        code=ds.code,
        title=ds.title,
        title_en=ds.title_en,
        description=ds.description,
        description_en=ds.description_en,
        category=ds.category,
        keywords=ds.keywords,
        owner_org=ds.owner_org,
        department=ds.department,
        update_cycle=ds.update_cycle,
        open_type=ds.open_type,
        share_type=ds.share_type,
        licence=ds.licence,
        temporal_coverage=ds.temporal_coverage,
        spatial_coverage=ds.spatial_coverage,
        contact=ds.contact,
        grade=ds.grade,
        grade_reasons=ds.grade_reasons,
        current_version=ds.current_version,
        quality_score=ds.quality_score,
        fields=ds.schema_def["fields"],
        key=ds.schema_def.get("key"),
        created_at=ds.created_at,
        updated_at=ds.updated_at,
        access=ACCESS_HINT.get(ds.open_type, "apply"),
    )


def version_out(v: DatasetVersion) -> VersionOut:
    return VersionOut(
        number=v.number,
        rows=v.rows,
        bytes=v.bytes,
        content_digest=v.content_digest,
        encrypted=v.encrypted,
        source_format=v.source_format,
        encoding=v.encoding,
        open_rows=v.open_rows,
        quality_score=v.quality_score,
        published_by=v.published_by,
        created_at=v.created_at,
    )
