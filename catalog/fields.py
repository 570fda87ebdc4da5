"""A dataset's registered schema: its fields (name, Chinese label, type, tag, constraints) and key.

Coordinates: a `geo_point` is stored as two `number` fields that both carry the `geo_point` tag and
whose names end in `lon` / `lat` with the same prefix (`lon`+`lat`, `entrance_lon`+`entrance_lat`).
Why two numbers rather than one "lon,lat" string: the columns stay typed (range checks, Parquet
statistics and DuckDB filters work on them directly), masking snaps each coordinate to a grid without
parsing text, and the `coord_china` check compares two aligned float arrays.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from common.errors import Invalid

FieldType = Literal["string", "integer", "number", "boolean", "date", "datetime"]
IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
TAG_SHAPE = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
MAX_FIELDS = 1000


class FieldSpec(BaseModel):
    """One column: `tag` names what it holds (the policies layer validates the vocabulary)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    label: str = Field(min_length=1, max_length=100)
    type: FieldType = "string"
    tag: str = "plain"
    description: str = ""
    required: bool = False
    unique: bool = False
    allowed: list[Any] | None = None
    minimum: float | None = None
    maximum: float | None = None

    @field_validator("name")
    @classmethod
    def _snake_case(cls, v: str) -> str:
        if not IDENTIFIER.fullmatch(v):
            raise ValueError(
                f"field name {v[:70]!r} must be snake_case: a lowercase letter, then lowercase letters, "
                "digits or '_' (at most 63 characters)"
            )
        return v

    @field_validator("tag")
    @classmethod
    def _tag_shape(cls, v: str) -> str:
        if not TAG_SHAPE.fullmatch(v):
            raise ValueError(f"tag {v[:50]!r} must be a lowercase vocabulary word such as id_number")
        return v


class Schema(BaseModel):
    """The ordered fields of a dataset and its optional key field (used to name failing rows)."""

    model_config = ConfigDict(extra="forbid")

    fields: list[FieldSpec]
    key: str | None = None

    def model_post_init(self, __context: Any) -> None:
        _check_schema(self)

    @classmethod
    def parse(cls, data: Any) -> Schema:
        """Build from a dict (e.g. a request body); any problem becomes `Invalid` saying what to fix."""
        try:
            return data if isinstance(data, Schema) else cls.model_validate(data)
        except ValidationError as exc:
            msgs = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()[:10]
            )
            raise Invalid(f"schema is not valid: {msgs}") from None

    @property
    def names(self) -> list[str]:
        """Field names in order."""
        return [f.name for f in self.fields]

    def field(self, name: str) -> FieldSpec:
        """The field called `name` (KeyError if absent)."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def geo_pairs(self) -> list[tuple[str, str]]:
        """(lon, lat) field-name pairs of every geo_point."""
        names = {f.name for f in self.fields if f.tag == "geo_point"}
        return [(n, n[:-3] + "lat") for n in sorted(names) if n.endswith("lon")]


def _check_schema(schema: Schema) -> None:
    if not schema.fields:
        raise Invalid("schema has no fields: declare at least one field")
    if len(schema.fields) > MAX_FIELDS:
        raise Invalid(f"schema has {len(schema.fields)} fields; at most {MAX_FIELDS} are allowed")
    seen: set[str] = set()
    dups = sorted({f.name for f in schema.fields if f.name in seen or seen.add(f.name)})  # type: ignore[func-returns-value]
    if dups:
        raise Invalid(f"duplicate field names {dups}: give every field a distinct name")
    if schema.key is not None and schema.key not in seen:
        raise Invalid(f"key {schema.key!r} is not one of the fields: name an existing field as the key")
    for f in schema.fields:
        if f.minimum is not None and f.maximum is not None and f.minimum > f.maximum:
            raise Invalid(f"field {f.name!r}: minimum is greater than maximum; swap or fix them")
        if (f.minimum is not None or f.maximum is not None) and f.type not in ("integer", "number"):
            raise Invalid(f"field {f.name!r}: minimum/maximum apply only to integer or number fields")
        if f.allowed is not None and not f.allowed:
            raise Invalid(f"field {f.name!r}: allowed is empty; list the allowed values or omit it")
        if f.tag == "geo_point":
            _check_geo(f, seen, schema)


def _check_geo(f: FieldSpec, names: set[str], schema: Schema) -> None:
    if f.type != "number":
        raise Invalid(f"field {f.name!r}: a geo_point coordinate must have type number")
    if not (f.name.endswith("lon") or f.name.endswith("lat")):
        raise Invalid(f"field {f.name!r}: a geo_point field name must end in 'lon' or 'lat' (e.g. lon/lat)")
    partner = f.name[:-3] + ("lat" if f.name.endswith("lon") else "lon")
    if partner not in names or schema.field(partner).tag != "geo_point":
        raise Invalid(f"field {f.name!r}: add its partner {partner!r} (type number, tag geo_point)")
