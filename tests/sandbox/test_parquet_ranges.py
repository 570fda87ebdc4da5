"""Loading some columns of a stored version: only their column chunks (and the footer) are read, at rest
only their chunks decrypted; the result is the same table pyarrow reads from the whole file."""

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common.errors import Invalid
from gmcrypto.keys import Keyring
from sandbox import worker
from sandbox.parquet_ranges import PlainFile, read_columns
from sandbox.runner import Limits, ParquetFile, ParquetRanges, SandboxRunner

COLS = ["district_code", "birth_date"]


@pytest.fixture
def big(population):
    return pa.concat_tables([population] * 200)  # 22,000 rows: the column data outweighs the footer


@pytest.fixture
def stored(tmp_path, big):
    path = tmp_path / "v1.parquet"
    pq.write_table(big, path, row_group_size=8000)  # several row groups, dictionary pages
    return path


def _read(ranges: ParquetRanges, cols):
    return pq.ParquetFile(pa.BufferReader(pa.py_buffer(ranges.assemble()))).read(columns=cols)


def test_plain_file_columns_read_alone_equal_the_whole_file(stored, big):
    with PlainFile(stored) as f:
        ranges = read_columns(f, COLS)
    assert _read(ranges, COLS).equals(big.select(COLS))
    assert ranges.nbytes < stored.stat().st_size / 2
    image = bytes(ranges.assemble())
    assert b"name1" in stored.read_bytes() and b"name1" not in image  # another column's values stay out


def test_encrypted_file_decrypts_only_the_chunks_of_the_columns(tmp_path, stored, big):
    ring = Keyring.generate()
    sealed = tmp_path / "v1.parquet.sm4"
    ring.encrypt_file(stored, sealed, aad=b"v1", chunk_size=1024)
    chunks = -(-stored.stat().st_size // 1024)
    with ring.open_file(sealed, aad=b"v1") as r:
        ranges = read_columns(r, ["gender"])
        assert r.chunks_opened < chunks / 2
    assert _read(ranges, ["gender"]).equals(big.select(["gender"]))


def test_not_parquet_is_refused(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"x" * 100)
    with PlainFile(bad) as f, pytest.raises(Invalid):
        read_columns(f, COLS)


def test_the_worker_loads_ranges(stored):
    with PlainFile(stored) as f:
        ranges = read_columns(f, COLS)
    with SandboxRunner(Limits(timeout_s=5.0, memory_mb=256, threads=1)) as runner:
        res = runner.run(
            "select count(*) as n, count(distinct district_code) as d from population",
            {"population": ranges},
            columns={"population": set(COLS)},
        )
    assert res.rows == [{"n": 22_000, "d": 5}]


def test_codes_are_decoded_as_dictionaries_and_query_the_same(tmp_path, stored, big):
    unique = tmp_path / "unique.parquet"
    n = big.num_rows
    pq.write_table(big.set_column(0, "id_number", pa.array([f"id{i:08d}" for i in range(n)])), unique)
    assert worker._dictionary_columns(pq.read_metadata(unique), None) == ["person_name", "gender", "district_code"]
    # (the 110 names repeat, so they are codes too; unique ids and dates are not)
    table = worker._load({"path": str(stored)}, ["district_code", "id_number"])
    assert pa.types.is_dictionary(table.schema.field("district_code").type)
    assert table.column("district_code").to_pylist() == big.column("district_code").to_pylist()
    sql = "select district_code, upper(district_code) || '-' as u, count(*) as n from population group by 1, 2"
    with SandboxRunner(Limits(timeout_s=5.0, memory_mb=256, threads=1)) as runner:
        res = runner.run(sql, {"population": ParquetFile(str(stored))}, columns={"population": {"district_code"}})
    con = duckdb.connect()
    con.register("population", big.select(["district_code"]))
    want = con.sql(sql).to_arrow_table()
    assert res.table.schema == want.schema  # plain text out, as ever
    assert sorted(res.rows, key=str) == sorted(want.to_pylist(), key=str)
