"""Rows of an open edition: every filter op on every type, sorts with ties, keyset pages, refusals."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalog import reader
from catalog.reader import Filter, RowQuery, parse_query, read_rows
from common.errors import BadRequest, Invalid

KEY = b"server-cursor-key-0123456789abcdef"
VERSION = "population/1"
N = 37


def _rows() -> list[dict]:
    """Deterministic rows with ties, nulls, Chinese text and shared prefixes in every column."""
    out = []
    for k in range(N):
        out.append(
            {
                "id": k,
                "s": None if k % 9 == 4 else ["510104", "510105", "511700", "王五", 'a"b,c', ""][k % 6],
                "i": None if k % 11 == 3 else (k * 7) % 5 - 2,
                "f": None if k % 10 == 7 else [0.1, -2.5, 1e300, 0.1][k % 4],
                "b": None if k % 13 == 5 else k % 3 == 0,
                "d": None if k % 8 == 6 else dt.date(1990 + k % 4, 1 + k % 12, 1 + k % 28),
                "ts": None if k % 7 == 2 else dt.datetime(2024, 1, 1, k % 24, k % 60, 0, 500 * (k % 3)),
            }
        )
    return out


SCHEMA = pa.schema(
    [
        ("_row", pa.int64()),
        ("id", pa.int64()),
        ("s", pa.string()),
        ("i", pa.int32()),
        ("f", pa.float64()),
        ("b", pa.bool_()),
        ("d", pa.date32()),
        ("ts", pa.timestamp("us")),
    ]
)


def _write(path, rows):
    table = pa.Table.from_pylist([{"_row": n + 1, **r} for n, r in enumerate(rows)], schema=SCHEMA)
    pq.write_table(table, path, row_group_size=8)


@pytest.fixture(params=["row-store", "parquet"])
def edition(request, tmp_path, monkeypatch):
    """Every test runs on the built row store and on DuckDB over the Parquet (before it is built)."""
    path = tmp_path / "open.parquet"
    _write(path, _rows())
    if request.param == "row-store":
        reader.prepare(path)
    else:
        monkeypatch.setattr(reader, "BUILD_ON_READ", False)
    return path


def _all(path, query: RowQuery) -> list[dict]:
    """Follow cursors to the end; fail on a loop."""
    out, q = [], query
    for _ in range(N + 2):
        page = read_rows(path, q, cursor_key=KEY, version=VERSION)
        out.extend(page.data)
        if page.next_cursor is None:
            return out
        q = dataclasses.replace(q, cursor=page.next_cursor)
    raise AssertionError("pagination did not end")


def _ids(rows):
    return [r["id"] for r in rows]


TYPES = {"id": "int", "s": "string", "i": "int", "f": "float", "b": "bool", "d": "date", "ts": "timestamp"}
PY = {
    "s": str,
    "i": int,
    "f": float,
    "b": lambda v: v in ("1", "true"),
    "d": dt.date.fromisoformat,
    "ts": dt.datetime.fromisoformat,
}
VALUES = {"s": "511700", "i": "0", "f": "0.1", "b": "true", "d": "1991-02-14", "ts": "2024-01-01T03:03:00"}


def _expect(field, op, raw):
    conv = PY[field]
    out = []
    for r in _rows():
        v = r[field]
        if op == "isnull":
            ok = v is None
        elif op == "notnull":
            ok = v is not None
        elif v is None:
            ok = False
        elif op == "in":
            ok = v in {conv(x) for x in raw.split(",")}
        elif op == "prefix":
            ok = v.startswith(raw)
        else:
            x = conv(raw)
            ok = {"eq": v == x, "ne": v != x, "lt": v < x, "lte": v <= x, "gt": v > x, "gte": v >= x}[op]
        if ok:
            out.append(r["id"])
    return out


CASES = [(f, op) for f in PY for op in ("eq", "ne", "lt", "lte", "gt", "gte", "isnull", "notnull")]
CASES += [(f, "in") for f in PY] + [("s", "prefix")]


@pytest.mark.parametrize(("field", "op"), CASES)
def test_every_filter_op_on_every_type(edition, field, op):
    raw = VALUES[field]
    if op == "in":
        raw = {
            "s": "511700,王五",
            "i": "0,2",
            "f": "0.1,1e300",
            "b": "false",
            "d": "1991-02-03,1990-01-01",
            "ts": "2024-01-01T05:05:00,2024-01-01T00:00:00",
        }[field]
    if op in ("isnull", "notnull"):
        raw = "1"
    if field == "b" and op in ("gt", "gte"):
        raw = "false"  # nothing is above true
    key = field if op == "eq" else f"{field}__{op}"
    q = parse_query([(key, raw), ("_size", "5")], TYPES)
    got = _ids(_all(edition, q))
    assert got == _expect(field, op, raw)
    assert got  # every case selects something, so a broken filter cannot pass by returning nothing


def test_prefix_on_text_is_exact(edition):
    q = parse_query({"s__prefix": "5101"}, TYPES)
    assert sorted({r["s"] for r in _all(edition, q)}) == ["510104", "510105"]


def test_isnull_zero_means_notnull(edition):
    q = parse_query({"i__isnull": "0"}, TYPES)
    assert _ids(_all(edition, q)) == _expect("i", "notnull", "1")


def test_timestamp_with_offset_is_compared_in_utc(edition):
    q = parse_query({"ts": "2024-01-01T11:03:00+08:00"}, TYPES)
    assert _ids(_all(edition, q)) == _expect("ts", "eq", "2024-01-01T03:03:00")


def _sort_ref(keys):
    rows = [(n + 1, r) for n, r in enumerate(_rows())]
    # SQLite order: NULLs first ascending, last descending; the row number breaks ties.
    tie_desc = keys[-1][1] == "desc" if keys else False
    rows.sort(key=lambda t: t[0], reverse=tie_desc)
    for name, direction in reversed(keys):
        nulls = [t for t in rows if t[1][name] is None]
        vals = [t for t in rows if t[1][name] is not None]
        vals.sort(key=lambda t: t[1][name], reverse=direction == "desc")
        rows = nulls + vals if direction == "asc" else vals + nulls
    return [t[1]["id"] for t in rows]


@pytest.mark.parametrize(
    "sort",
    ["i", "-i", "s", "-s", "d,-f", "-b,ts", "-ts", "f,i", "-d,-i", "b,s,-i"],
)
@pytest.mark.parametrize("size", ["1", "4", "50"])
def test_sort_with_ties_pages_each_row_exactly_once(edition, sort, size):
    q = parse_query({"_sort": sort, "_size": size}, TYPES)
    got = _ids(_all(edition, q))
    assert got == _sort_ref(list(q.sort))
    assert sorted(got) == list(range(N))


def test_filter_and_sort_together(edition):
    q = parse_query([("i__gte", "0"), ("_sort", "-d"), ("_size", "3")], TYPES)
    want = [x for x in _sort_ref([("d", "desc")]) if x in set(_expect("i", "gte", "0"))]
    assert _ids(_all(edition, q)) == want


def test_field_selection_and_types_of_values(edition):
    page = read_rows(
        edition, parse_query({"_fields": "id,b,d,ts", "_size": "1"}, TYPES), cursor_key=KEY, version=VERSION
    )
    assert page.data == [{"id": 0, "b": True, "d": "1990-01-01", "ts": "2024-01-01T00:00:00.000000"}]
    assert page.meta["fields"] == ["id", "b", "d", "ts"]


def test_default_order_is_stored_order(edition):
    assert _ids(_all(edition, RowQuery(limit=7))) == list(range(N))


def test_page_size_is_capped_and_defaults():
    assert parse_query({"_size": "5000"}, TYPES).limit == reader.MAX_LIMIT
    assert parse_query({}, TYPES).limit == reader.DEFAULT_LIMIT


@pytest.mark.parametrize("size", ["0", "-1", "abc", "1.5", ""])
def test_bad_page_size_is_refused(size):
    with pytest.raises(BadRequest, match="_size"):
        parse_query({"_size": size}, TYPES)


def test_total_count_with_and_without_filters(edition):
    page = read_rows(edition, RowQuery(limit=2, count=True), cursor_key=KEY, version=VERSION)
    assert page.total == N
    q = parse_query({"s": "511700", "_count": "1", "_size": "1"}, TYPES)
    assert read_rows(edition, q, cursor_key=KEY, version=VERSION).total == len(_expect("s", "eq", "511700"))
    assert read_rows(edition, RowQuery(limit=2), cursor_key=KEY, version=VERSION).total is None


def test_cursor_from_another_query_or_version_is_refused(edition):
    q = parse_query({"_sort": "i", "_size": "2"}, TYPES)
    cur = read_rows(edition, q, cursor_key=KEY, version=VERSION).next_cursor
    other = parse_query({"_sort": "-i", "_size": "2", "_cursor": cur}, TYPES)
    with pytest.raises(BadRequest, match="different filters or sort"):
        read_rows(edition, other, cursor_key=KEY, version=VERSION)
    with pytest.raises(BadRequest, match="another version"):
        read_rows(edition, dataclasses.replace(q, cursor=cur), cursor_key=KEY, version="population/2")
    with pytest.raises(BadRequest):
        read_rows(edition, dataclasses.replace(q, cursor=cur[:-2] + "xx"), cursor_key=KEY, version=VERSION)


def test_cursor_survives_a_change_of_page_size_and_fields(edition):
    q = parse_query({"_sort": "d", "_size": "10"}, TYPES)
    first = read_rows(edition, q, cursor_key=KEY, version=VERSION)
    nxt = parse_query({"_sort": "d", "_size": "3", "_fields": "id", "_cursor": first.next_cursor}, TYPES)
    page = read_rows(edition, nxt, cursor_key=KEY, version=VERSION)
    assert _ids(page.data) == _sort_ref([("d", "asc")])[10:13]


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"nope": "1"}, "unknown field"),
        ({"_fields": "id,nope"}, "unknown field"),
        ({"_sort": "-nope"}, "unknown field"),
        ({"i__like": "1"}, "unknown operator"),
        ({"_limit": "1"}, "unknown parameter"),
        ({"../etc/passwd": "1"}, "unknown field"),
        ({"_fields": "../../x"}, "unknown field"),
        ({"s.id": "1"}, "unknown field"),
        ({'s" OR 1=1 --': "1"}, "unknown field"),
        ({"_fields": "_row"}, "unknown field"),
        ({"_row__gt": "3"}, "unknown"),
        ({"i__prefix": "1"}, "prefix works on text"),
        ({"b__isnull": "maybe"}, "isnull"),
        ({"_count": "2"}, "_count"),
    ],
)
def test_bad_names_and_operators_are_refused(params, match):
    with pytest.raises(BadRequest, match=match):
        parse_query(params, TYPES)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"i": "abc"}, "i"),
        ({"i__gt": "1.5"}, "i"),
        ({"i": "99999999999999999999"}, "i"),
        ({"f": "nan"}, "f"),
        ({"f__lt": "inf"}, "f"),
        ({"f": "x"}, "f"),
        ({"b": "maybe"}, "b"),
        ({"d": "2020-13-01"}, "d"),
        ({"d": "20200101"}, "d"),
        ({"ts": "yesterday"}, "ts"),
        ({"i__in": "1,x"}, "i"),
        ({"s": "x" * 1001}, "s"),
    ],
)
def test_bad_values_are_refused_naming_the_field(params, field):
    with pytest.raises(Invalid, match=repr(field)):
        parse_query(params, TYPES)


def test_too_many_in_values_are_refused():
    with pytest.raises(BadRequest, match="1 to"):
        parse_query({"i__in": ",".join(str(k) for k in range(101))}, TYPES)


def test_read_rows_revalidates_queries_built_in_code(edition):
    with pytest.raises(BadRequest):
        read_rows(edition, RowQuery(filters=(Filter("nope", "eq", 1),)), cursor_key=KEY, version=VERSION)
    with pytest.raises(BadRequest):
        read_rows(edition, RowQuery(fields=('id" FROM rows; --',)), cursor_key=KEY, version=VERSION)
    with pytest.raises(BadRequest):
        read_rows(edition, RowQuery(limit=5000), cursor_key=KEY, version=VERSION)


def test_derived_store_follows_a_replaced_file(edition):
    assert read_rows(edition, RowQuery(count=True, limit=1), cursor_key=KEY, version=VERSION).total == N
    _write(edition, _rows()[:5])
    st = edition.stat()
    os.utime(edition, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert read_rows(edition, RowQuery(count=True, limit=1), cursor_key=KEY, version=VERSION).total == 5


def test_edition_without_row_number_is_refused(tmp_path):
    path = tmp_path / "bare.parquet"
    pq.write_table(pa.table({"a": [1, 2]}), path)
    with pytest.raises(Invalid, match="_row"):
        reader.columns_of(path)


def test_cache_dir_keeps_derived_files_elsewhere(edition, tmp_path):
    cache = tmp_path / "cache"
    reader.set_cache_dir(cache)
    try:
        reader.prepare(edition)
        assert list(cache.glob("*.rows.sqlite"))
    finally:
        reader.set_cache_dir(None)


def test_columns_of_lists_public_fields_with_types(edition):
    assert reader.columns_of(edition) == TYPES


def _wait_ready(path, seconds=30.0):
    import time

    deadline = time.monotonic() + seconds
    while not reader.is_ready(path):
        assert time.monotonic() < deadline, "the row store was not built in the background"
        time.sleep(0.02)


def test_reads_before_the_row_store_exists_use_the_parquet_then_switch_with_the_same_cursor(tmp_path):
    path = tmp_path / "open.parquet"
    _write(path, _rows())
    q = parse_query({"_sort": "-d,i", "_size": "5"}, TYPES)
    first = read_rows(path, q, cursor_key=KEY, version=VERSION)  # starts the background build
    assert isinstance(reader._fallback.get(str(path)), reader._ParquetRows)
    _wait_ready(path)
    rest = _all(path, dataclasses.replace(q, cursor=first.next_cursor))
    assert isinstance(reader.open_store(path), reader._Store)
    assert _ids(first.data + rest) == _sort_ref([("d", "desc"), ("i", "asc")])


def test_a_build_cleans_up_what_a_dead_builder_left(tmp_path):
    path = tmp_path / "open.parquet"
    _write(path, _rows())
    stale = tmp_path / "open.parquet.rows.sqlite.4242.1.tmp"
    stale.write_bytes(b"half a database")
    reader.prepare(path)
    assert reader.is_ready(path) and not stale.exists()


def test_a_failed_background_build_leaves_reads_on_the_parquet(tmp_path, monkeypatch):
    path = tmp_path / "open.parquet"
    _write(path, _rows())

    def broken(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(reader, "_build", broken)
    thread = reader.build_in_background(path)
    assert thread is not None
    thread.join(10)
    assert reader.build_in_background(path) is None  # not retried at once
    assert not reader.is_ready(path) and not list(tmp_path.glob("*.tmp"))
    assert read_rows(path, RowQuery(count=True, limit=1), cursor_key=KEY, version=VERSION).total == N
    reader._failed.clear()
