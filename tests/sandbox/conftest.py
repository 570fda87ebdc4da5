"""Fixtures for the sandbox tests: small population and certificates Parquet tables and one warm runner."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sandbox.runner import Limits, ParquetBytes, ParquetFile, SandboxRunner

# District sizes chosen so output control has big groups, small groups and a margin to protect.
DISTRICT_SIZES = {"510104": 40, "510105": 30, "510106": 25, "510107": 3, "510108": 12}
CERT_TYPES = ("business_licence", "driving_licence", "marriage")

GRANTED = {
    "population": {"id_number", "gender", "birth_date", "district_code"},
    "certificates": {"cert_no", "holder_id", "cert_type", "issued_on"},
}
ALL_COLUMNS = {
    "population": GRANTED["population"] | {"person_name"},
    "certificates": GRANTED["certificates"],
}
IDENTITY = {"population": "id_number", "certificates": "holder_id"}
FIELD_TAGS = {
    "population": {"id_number": "id_number", "person_name": "person_name", "birth_date": "birth_date"},
    "certificates": {"cert_no": "certificate_no", "holder_id": "id_number"},
}


def _id_number(i: int, district: str) -> str:
    return f"{district}19{80 + i % 20:02d}0101{i:04d}"[:18]


def population_table() -> pa.Table:
    rows: dict[str, list[object]] = {
        c: [] for c in ("id_number", "person_name", "gender", "birth_date", "district_code")
    }
    i = 0
    for district, size in DISTRICT_SIZES.items():
        for _ in range(size):
            rows["id_number"].append(_id_number(i, district))
            rows["person_name"].append(f"name{i}")
            rows["gender"].append("F" if i % 2 else "M")
            rows["birth_date"].append(dt.date(1960 + i % 50, 1 + i % 12, 1 + i % 28))
            rows["district_code"].append(district)
            i += 1
    return pa.table(rows)


def certificates_table(pop: pa.Table) -> pa.Table:
    ids = pop.column("id_number").to_pylist()
    rows: dict[str, list[object]] = {"cert_no": [], "holder_id": [], "cert_type": [], "issued_on": []}
    for n, holder in enumerate(ids):
        for j in range(1 + n % 2):  # every person holds one or two certificates
            rows["cert_no"].append(f"C{n:05d}{j}")
            rows["holder_id"].append(holder)
            rows["cert_type"].append(CERT_TYPES[(n + j) % len(CERT_TYPES)])
            rows["issued_on"].append(dt.date(2020, 1 + n % 12, 1))
    return pa.table(rows)


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


@pytest.fixture(scope="session")
def population() -> pa.Table:
    return population_table()


@pytest.fixture(scope="session")
def sources(population: pa.Table, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Population as a plaintext file, certificates as in-memory (decrypted) bytes: both source kinds."""
    path = Path(tmp_path_factory.mktemp("sandbox")) / "population.parquet"
    pq.write_table(population, path)
    return {
        "population": ParquetFile(str(path)),
        "certificates": ParquetBytes(parquet_bytes(certificates_table(population))),
    }


@pytest.fixture(scope="session")
def runner():
    with SandboxRunner(Limits(timeout_s=3.0, memory_mb=256, threads=1, max_rows=500, kill_grace_s=2.0)) as r:
        r.warm_up()
        yield r
