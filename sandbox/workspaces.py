"""Workspaces: a grant's tables, their data dictionaries and masked previews; loading granted data."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from sqlmodel import Session

from catalog import publish, storage
from catalog import service as catalog
from catalog.models import Dataset, DatasetVersion
from common.actor import Actor
from common.errors import Conflict
from policies import masking, vocabulary
from sandbox import grants
from sandbox.parquet_ranges import ParquetRanges, PlainFile, read_columns

PREVIEW_ROWS = 10


def current_version(session: Session, ds: Dataset) -> DatasetVersion:
    if ds.current_version is None:
        raise Conflict(f"dataset {ds.code!r} has no published version yet; ask its department to publish one")
    return catalog.version(session, ds, ds.current_version)


def parquet_bytes(ds: Dataset, v: DatasetVersion, *, keyring: Any, data_dir: Path) -> bytes:
    """The version's raw Parquet in memory; encrypted-at-rest files are decrypted into memory only."""
    path = storage.raw_path(data_dir, ds.code, v.number, encrypted=v.encrypted)
    if v.encrypted:
        return keyring.decrypt_file_to_bytes(path, aad=publish.at_rest_aad(ds.code, v.content_digest))
    return path.read_bytes()


@dataclass(frozen=True)
class VersionRef:
    """Where a published version lies and how it is sealed, as plain values (safe to use off the session)."""

    code: str
    number: int
    encrypted: bool
    content_digest: str

    @classmethod
    def of(cls, ds: Dataset, v: DatasetVersion) -> VersionRef:
        return cls(ds.code, v.number, bool(v.encrypted), v.content_digest)

    def columns(self, columns: list[str] | set[str], *, keyring: Any, data_dir: Path) -> ParquetRanges:
        """Only `columns` of the version (and its footer): at rest, only the chunks holding them are decrypted."""
        path = storage.raw_path(data_dir, self.code, self.number, encrypted=self.encrypted)
        if self.encrypted:
            with keyring.open_file(path, aad=publish.at_rest_aad(self.code, self.content_digest)) as reader:
                return read_columns(reader, columns)
        with PlainFile(path) as plain:
            return read_columns(plain, columns)


def parquet_columns(
    ds: Dataset, v: DatasetVersion, columns: list[str] | set[str], *, keyring: Any, data_dir: Path
) -> ParquetRanges:
    """Only `columns` of the version (and its footer): at rest, only the chunks holding them are decrypted."""
    return VersionRef.of(ds, v).columns(columns, keyring=keyring, data_dir=data_dir)


# Called with (grant id, [(table name, dataset, version, granted columns)]) once a workspace was allowed.
Preload = Callable[[int, list[tuple[str, Dataset, DatasetVersion, list[str]]]], None]


def read_frame(
    data: bytes | bytearray, columns: list[str], *, limit: int | None = None, offset: int = 0
) -> pd.DataFrame:
    """Some columns (and optionally a row window) of a Parquet file held in memory."""
    table = pq.ParquetFile(pa.BufferReader(data)).read(columns=columns)
    if limit is not None:
        table = table.slice(offset, limit)
    return table.to_pandas()


def jsonable_rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-safe dicts (dates as ISO text, missing values as null)."""
    return json.loads(df.to_json(orient="records", date_format="iso", force_ascii=False))


def masked_grade(tags: dict[str, str], audience: str) -> int:
    """Highest grade left among these columns after masking for `audience` (0 for none)."""
    v = vocabulary.default()
    return max((vocabulary.result_grade(v.tag(t), audience) for t in tags.values()), default=0)


def dictionary(ds: Dataset, columns: list[str]) -> list[dict[str, Any]]:
    """The data dictionary of the granted columns, with how the sandbox masks each in previews."""
    v = vocabulary.default()
    out = []
    for f in ds.schema_def.get("fields", []):
        if f["name"] in columns:
            tag = v.tag(f["tag"])
            out.append(
                {
                    "name": f["name"],
                    "label": f.get("label", ""),
                    "type": f.get("type"),
                    "tag": f["tag"],
                    "grade": v.grade_code(tag.grade),
                    "preview_masking": tag.masking["sandbox"].method,
                }
            )
    return out


def workspace(
    session: Session,
    *,
    actor: Actor,
    grant_id: int,
    keyring: Any,
    data_dir: Path,
    preview_rows: int = PREVIEW_ROWS,
    preload: Preload | None = None,
) -> dict[str, Any]:
    """The granted tables with their dictionaries and previews masked for the sandbox (pseudonyms per grant).
    With `preload`, the granted tables are also handed to it to be warmed for the first query."""
    g = grants.get(session, grant_id)
    datasets = grants.datasets_of(session, g.datasets)
    by_ds = grants.columns_by_dataset(g.columns)
    names = {code: name for name, code in grants.table_names(datasets).items()}

    def ctx(code: str) -> Any:
        tags = {c: t for c, t in grants.fields_of(datasets[code]).items() if c in by_ds.get(code, [])}
        return grants.context(
            g, columns=[grants.qualified(code, c) for c in tags], raw_grade=masked_grade(tags, "sandbox")
        )

    with grants.authorized_each(
        session,
        actor,
        "workspace:query",
        datasets,
        ctx,
        resource_type="workspace",
        resource_id=str(grant_id),
        purpose=g.purpose,
        grant=g,
    ) as outcome:
        key = grants.pseudonym_key(g, keyring)
        tables = []
        warm: list[tuple[str, Dataset, DatasetVersion, list[str]]] = []
        for code, ds in datasets.items():
            cols = [c for c in grants.fields_of(ds) if c in by_ds.get(code, [])]
            entry: dict[str, Any] = {
                "table": names[code],
                "dataset": code,
                "title": ds.title,
                "grade": ds.grade,
                "columns": dictionary(ds, cols),
                "version": ds.current_version,
                "rows": None,
                "preview": [],
            }
            if ds.current_version is not None:
                v = current_version(session, ds)
                ranges = parquet_columns(ds, v, cols, keyring=keyring, data_dir=data_dir)
                frame = read_frame(ranges.assemble(), cols, limit=preview_rows)
                tags = grants.fields_of(ds)
                masked = masking.mask_frame(frame, {c: tags[c] for c in cols}, "sandbox", key)
                entry.update({"rows": v.rows, "preview": jsonable_rows(masked)})
                warm.append((names[code], ds, v, cols))
            tables.append(entry)
        outcome.update(
            {"grant": grant_id, "tables": len(tables), "preview_rows": sum(len(t["preview"]) for t in tables)}
        )
        if preload is not None and warm:
            outcome["preload"] = sorted(ds.code for _n, ds, _v, _c in warm)
    if preload is not None and warm:
        preload(grant_id, warm)  # only once the decision and its audit record went through
    return {"grant": grants.to_out(g), "tables": tables}
