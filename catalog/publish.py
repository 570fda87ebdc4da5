"""Publishing a version: ingest → conform → quality → grade → store (encrypted from G3) → open edition.

The heavy work runs in a staging directory with no database lock held; the version then goes live in
one short transaction that takes the next number under a row lock, renames the staged directory into
place and records the audit entry. A failure at any step leaves the previous version live and nothing
on disk (see catalog/storage.py for the crash story). The open edition's derived row store is not on
this path: it is built in the background after the commit (a cache; readers use the Parquet meanwhile).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlmodel import Session, func, select

from catalog import reader, service, storage
from catalog.fields import Schema
from catalog.models import Dataset, DatasetVersion
from common import clock
from common.actor import Actor
from common.errors import Invalid
from gmcrypto import sm3
from policies import masking, resources, vocabulary
from policies.guard import authorized

ENCRYPT_FROM_LEVEL = 3  # G3 (personal information) and above are SM4-encrypted at rest
OPEN_BATCH_ROWS = 131_072
ROW_COLUMN = "_row"  # 1-based row number in the open edition: the keyset tiebreaker
StageHook = Callable[[str], None]


def _no_stage(_name: str) -> None:
    pass


@dataclass
class Upload:
    """An uploaded file already streamed to disk, and what the uploader declared about it."""

    path: Path
    fmt: str | None = None  # csv | xlsx | parquet; sniffed from the bytes when None
    encoding: str | None = None  # detected when None
    sheet: str | None = None


@dataclass
class Staged:
    dir: Path
    rows: int
    bytes: int
    content_digest: str
    encrypted: bool
    source_format: str
    encoding: str | None
    open_rows: int | None
    open_digest: str | None
    quality: dict[str, Any]
    conformance: dict[str, Any]
    quality_score: float | None


def tag_checks(schema: Schema) -> dict[str, list[dict[str, Any]]]:
    """The checks each field tag implies, as the quality stage takes them."""
    return {
        f.tag: [
            {"check": c.name, "mostly": c.mostly, "severity": c.severity}
            for c in vocabulary.checks_for_tag(f.tag)
        ]
        for f in schema.fields
    }


def report_mask(tag: str, values: pd.Series) -> pd.Series:
    """Failing-row samples in reports are masked as for the public; pseudonymised tags are suppressed."""
    try:
        return masking.mask_series(values, tag, "public")
    except Invalid:
        return masking.suppress(values)


def publish(
    uow: Callable[[], AbstractContextManager[Session]],
    *,
    actor: Actor,
    code: str,
    upload: Upload,
    data_dir: Path,
    keyring: Any,
    limits: Any = None,
    on_stage: StageHook | None = None,
) -> DatasetVersion:
    """Publish `upload` as the next version of dataset `code`; returns the live version.

    `on_stage(name)` is called as each stage ends (ingest, quality, digest, open_edition, encrypt,
    go_live = rename + version row); the benchmark uses it for its per-stage breakdown. The open
    edition's row store is built in a background thread once the version is committed.
    """
    with uow() as s:  # read the dataset; no lock is held past this block
        ds = service.get(s, code)
        snapshot = Dataset.model_validate(ds.model_dump())
    with (
        uow() as s,
        authorized(
            s,
            actor,
            "dataset:publish",
            resources.dataset(snapshot),
            resource_type="dataset",
            resource_id=code,
        ) as act,
        storage.staging(data_dir) as work,
    ):
        staged = prepare(
            snapshot, upload, work, keyring=keyring, limits=limits, act=act, on_stage=on_stage
        )
        version = _go_live(s, snapshot.code, staged, data_dir, actor, act)
        number = version.number
        if on_stage is not None:
            on_stage("go_live")
    if staged.open_rows is not None:
        # Committed: build the open edition's row store off the critical path. Until it is ready the
        # open-data reader answers the same queries from the Parquet (catalog/reader.py).
        reader.build_in_background(storage.open_path(data_dir, snapshot.code, number))
    return version


def prepare(
    ds: Dataset,
    upload: Upload,
    work: Path,
    *,
    keyring: Any,
    limits: Any,
    act: Any,
    on_stage: StageHook | None = None,
) -> Staged:
    """All the heavy steps, inside `work`. Raises Invalid with the reports when the upload is refused."""
    from catalog.ingest import ingest
    from catalog.quality import run_quality

    stage = on_stage or _no_stage
    schema = Schema.parse(ds.schema_def)
    out = work / "version"
    out.mkdir()
    plain = out / storage.RAW_PLAIN
    result = ingest(
        upload.path,
        schema=schema,
        fmt=upload.fmt,
        encoding=upload.encoding,
        sheet=upload.sheet,
        dest_parquet=plain,
        limits=limits,
    )
    stage("ingest")
    conformance = {
        "ok": result.ok,
        "format": result.format,
        "encoding": result.encoding,
        "rows": result.rows,
        "problems": [p.model_dump(mode="json") for p in result.problems],
    }
    act.outcome.update({"rows": result.rows, "stage": "conformance"})
    if not result.ok:
        raise Invalid(
            "the upload does not conform to the registered schema; see `report`",
            extra={"report": {"conformance": conformance}},
        )
    report = run_quality(
        plain, schema=schema, tag_checks=tag_checks(schema), suite_json=ds.suite_json, mask=report_mask
    )
    quality = report.model_dump(mode="json")
    stage("quality")
    act.outcome.update({"stage": "quality", "quality_score": report.score})
    if report.verdict != "accepted":
        raise Invalid(
            "the upload failed its quality checks; see `report` for the failing rows",
            extra={"report": {"conformance": conformance, "quality": quality}},
        )
    digest = _file_digest(plain)
    stage("digest")
    open_rows = open_digest = None
    if ds.open_type == "unconditional":
        open_rows = derive_open_edition(plain, out / storage.OPEN, schema)
        open_digest = _file_digest(out / storage.OPEN)
        stage("open_edition")
    size = plain.stat().st_size
    encrypted = service.grade_level(ds.grade) >= ENCRYPT_FROM_LEVEL
    if encrypted:
        keyring.encrypt_file(plain, out / storage.RAW_SEALED, aad=at_rest_aad(ds.code, digest))
        plain.unlink()
        stage("encrypt")
    return Staged(
        dir=out,
        rows=result.rows,
        bytes=size,
        content_digest=digest,
        encrypted=encrypted,
        source_format=result.format,
        encoding=result.encoding,
        open_rows=open_rows,
        open_digest=open_digest,
        quality=quality,
        conformance=conformance,
        quality_score=report.score,
    )


def at_rest_aad(code: str, content_digest: str) -> bytes:
    """Binds an encrypted version to its dataset and recorded digest: a swapped file fails to open."""
    return f"pdg-at-rest:{code}:{content_digest}".encode()


def derive_open_edition(plain: Path, dest: Path, schema: Schema) -> int:
    """Mask every column for the public in batches (constant memory); suppressed columns are dropped."""
    tags = {f.name: f.tag for f in schema.fields}
    kept = [f.name for f in schema.fields if vocabulary.masking_for(f.tag, "public").method != "suppress"]
    src = pq.ParquetFile(plain)
    writer: pq.ParquetWriter | None = None
    row = 0
    try:
        for batch in src.iter_batches(batch_size=OPEN_BATCH_ROWS, columns=kept):
            frame = masking.mask_frame(batch.to_pandas(), {c: tags[c] for c in kept}, "public")
            table = pa.Table.from_pandas(frame, preserve_index=False)
            table = table.append_column(
                ROW_COLUMN, pa.array(range(row + 1, row + len(frame) + 1), pa.int64())
            )
            row += len(frame)
            if writer is None:
                writer = pq.ParquetWriter(dest, table.schema, compression="zstd")
            writer.write_table(table, row_group_size=OPEN_BATCH_ROWS)
        if writer is None:  # no rows: still write a valid, empty open edition
            empty = pa.Table.from_pandas(
                masking.mask_frame(src.read(columns=kept).to_pandas(), {c: tags[c] for c in kept}, "public"),
                preserve_index=False,
            )
            pq.write_table(empty.append_column(ROW_COLUMN, pa.array([], pa.int64())), dest)
    finally:
        if writer is not None:
            writer.close()
    return row


def _go_live(s: Session, code: str, staged: Staged, data_dir: Path, actor: Actor, act: Any) -> DatasetVersion:
    ds = service.get(s, code, for_update=True)  # serialises concurrent publishes of one dataset
    number = (
        s.exec(select(func.max(DatasetVersion.number)).where(DatasetVersion.dataset_id == ds.id)).one() or 0
    ) + 1
    final = storage.version_dir(data_dir, code, number)
    if final.exists():
        # Left by a crash between rename and commit: no row names it, and we hold the dataset's lock.
        storage.remove_dir(final)
    storage.commit_dir(staged.dir, final)
    s.info.setdefault("on_rollback", []).append(lambda: storage.remove_dir(final))
    v = DatasetVersion(
        dataset_id=ds.id or 0,
        number=number,
        rows=staged.rows,
        bytes=staged.bytes,
        content_digest=staged.content_digest,
        encrypted=staged.encrypted,
        source_format=staged.source_format,
        encoding=staged.encoding,
        open_rows=staged.open_rows,
        open_digest=staged.open_digest,
        quality_score=staged.quality_score,
        quality=staged.quality,
        conformance=staged.conformance,
        published_by=actor.principal,
        created_at=clock.now(),
    )
    s.add(v)
    ds.current_version = number
    ds.quality_score = staged.quality_score
    ds.updated_at = clock.now()
    s.add(ds)
    s.flush()
    act.dataset_version = number
    act.outcome.update(
        {
            "stage": "live",
            "version": number,
            "rows": staged.rows,
            "bytes": staged.bytes,
            "digest": staged.content_digest,
            "encrypted": staged.encrypted,
            "open_rows": staged.open_rows,
            "grade": ds.grade,
        }
    )
    return v


def _file_digest(path: Path) -> str:
    h = sm3.Hasher()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def copy_upload(src: Any, dest: Path, *, limit: int) -> int:
    """Copy a file-like upload to disk in chunks, refusing more than `limit` bytes."""
    from common.errors import TooLarge

    total = 0
    with open(dest, "wb") as out:
        while chunk := src.read(1 << 20):
            total += len(chunk)
            if total > limit:
                raise TooLarge(f"the upload exceeds the limit of {limit} bytes")
            out.write(chunk)
    return total
