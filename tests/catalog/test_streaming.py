"""Downloads: CSV (UTF-8, BOM, GBK, GB18030), NDJSON and Parquet round-trip exactly; Range and caching."""

from __future__ import annotations

import datetime as dt
import io
import json

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from catalog import streaming as st
from catalog.streaming import RangeNotSatisfiable, StreamTotals, parse_range

SCHEMA = pa.schema(
    [
        ("name", pa.string()),
        ("code", pa.string()),
        ("age", pa.int64()),
        ("score", pa.float64()),
        ("ok", pa.bool_()),
        ("born", pa.date32()),
        ("seen", pa.timestamp("us")),
    ]
)


def _table(n: int = 150_000) -> pa.Table:
    names = ["张三", "欧阳娜", 'quote "q", comma', "line\nbreak", "", None, "Ünïcode"]
    return pa.table(
        {
            "name": [names[k % len(names)] for k in range(n)],
            "code": [f"{510100 + k % 7:06d}" if k % 5 else None for k in range(n)],
            "age": [None if k % 17 == 0 else k % 90 for k in range(n)],
            "score": [None if k % 19 == 0 else (k * 0.1 if k % 3 else -1.0 / 3.0) for k in range(n)],
            "ok": [None if k % 23 == 0 else k % 2 == 0 for k in range(n)],
            "born": [
                None if k % 29 == 0 else dt.date(1950, 1, 1) + dt.timedelta(days=k % 20000) for k in range(n)
            ],
            "seen": [
                dt.datetime(2024, 1, 1) + dt.timedelta(seconds=k, microseconds=k % 1000) for k in range(n)
            ],
        },
        schema=SCHEMA,
    )


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    table = _table()
    path = tmp_path_factory.mktemp("ed") / "open.parquet"
    with_row = table.add_column(0, "_row", pa.array(range(1, len(table) + 1), pa.int64()))
    pq.write_table(with_row, path, row_group_size=40_000)
    return path, table


def _read_csv(data: bytes, encoding: str = "utf8") -> pa.Table:
    opts = pacsv.ConvertOptions(
        column_types=SCHEMA, strings_can_be_null=True, quoted_strings_can_be_null=False
    )
    read = pacsv.ReadOptions(encoding=encoding, block_size=1 << 22)
    parse = pacsv.ParseOptions(newlines_in_values=True)
    return pacsv.read_csv(io.BytesIO(data), read_options=read, parse_options=parse, convert_options=opts)


def _drain(gen) -> bytes:
    return b"".join(gen)


def test_csv_round_trips_exactly_with_totals(edition):
    path, table = edition
    totals = StreamTotals()
    seen = []
    data = _drain(st.csv_stream(st.iter_batches(path), totals, on_close=seen.append))
    assert _read_csv(data).equals(table)
    assert (totals.rows, totals.bytes, totals.completed) == (len(table), len(data), True)
    assert seen == [totals]
    assert data.count(b"\n" + b",".join(f'"{n}"'.encode() for n in SCHEMA.names)) == 0  # one header


def test_csv_with_bom_for_excel(edition):
    path, table = edition
    data = _drain(st.csv_stream(st.iter_batches(path), StreamTotals(), bom=True))
    assert data.startswith(b"\xef\xbb\xbf")
    assert _read_csv(data[3:]).equals(table)


def test_csv_in_gbk_round_trips_when_encodable(edition):
    path, table = edition
    totals = StreamTotals()
    data = _drain(st.csv_stream(st.iter_batches(path, ["name", "code", "age"]), totals, encoding="gbk"))
    assert "张三".encode("gbk") in data and "张三".encode() not in data
    want = table.select(["name", "code", "age"]).to_pylist()
    got = pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(encoding="gbk"),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=SCHEMA, strings_can_be_null=True, quoted_strings_can_be_null=False
        ),
    ).to_pylist()
    gbk = [
        dict(r, name=r["name"].encode("gbk", "replace").decode("gbk") if r["name"] else r["name"])
        for r in want
    ]
    assert got == gbk
    assert totals.replaced_chars == sum(
        1 for r in want if r["name"] for ch in r["name"] if ch.encode("gbk", "replace") == b"?" and ch != "?"
    )


def _edition_with(tmp_path, names):
    path = tmp_path / "x.parquet"
    pq.write_table(pa.table({"_row": list(range(1, len(names) + 1)), "name": names}), path)
    return path


def test_gbk_replaces_unencodable_characters_and_counts_them(tmp_path):
    path = _edition_with(tmp_path, ["王𠀀明", "a?b", "😀😀", "李四"])
    totals = StreamTotals()
    data = _drain(st.csv_stream(st.iter_batches(path), totals, encoding="gbk"))
    assert data.decode("gbk").splitlines() == ['"name"', '"王?明"', '"a?b"', '"??"', '"李四"']
    assert totals.replaced_chars == 3 and totals.completed


def test_gb18030_is_lossless(tmp_path):
    names = ["王𠀀明", "😀", "李四"]
    path = _edition_with(tmp_path, names)
    totals = StreamTotals()
    data = _drain(st.csv_stream(st.iter_batches(path), totals, encoding="gb18030", bom=True))
    assert [x.strip('"') for x in data.decode("gb18030").splitlines()[1:]] == names
    assert totals.replaced_chars == 0


def test_unknown_encoding_is_refused(edition):
    from common.errors import BadRequest

    with pytest.raises(BadRequest, match="encoding"):
        _drain(st.csv_stream(st.iter_batches(edition[0]), StreamTotals(), encoding="latin-1"))


def test_empty_edition_still_has_a_header(tmp_path):
    path = tmp_path / "e.parquet"
    pq.write_table(pa.table({"_row": pa.array([], pa.int64()), "a": pa.array([], pa.string())}), path)
    totals = StreamTotals()
    assert _drain(st.csv_stream(st.iter_batches(path), totals)) == b'"a"\n'
    assert totals.rows == 0 and totals.completed


def test_ndjson_round_trips(edition):
    path, table = edition
    totals = StreamTotals()
    data = _drain(st.ndjson_stream(st.iter_batches(path), totals))
    lines = data.decode().split("\n")
    assert lines[-1] == "" and len(lines) - 1 == len(table) == totals.rows
    got = [json.loads(x) for x in lines[:-1]]
    for g, w in zip(got[:3000], table.slice(0, 3000).to_pylist(), strict=True):
        assert list(g) == SCHEMA.names
        assert g["name"] == w["name"] and g["code"] == w["code"] and g["age"] == w["age"]
        assert g["score"] == w["score"] and g["ok"] == w["ok"]
        assert g["born"] == (w["born"].isoformat() if w["born"] else None)
        assert dt.datetime.fromisoformat(g["seen"]) == w["seen"]
    assert totals.bytes == len(data) and totals.completed


def test_field_selection_and_unknown_field(edition):
    path = edition[0]
    data = _drain(st.csv_stream(st.iter_batches(path, ["age", "name"]), StreamTotals()))
    assert data.split(b"\n", 1)[0] == b'"age","name"'
    from common.errors import BadRequest

    with pytest.raises(BadRequest, match="unknown field"):
        next(st.iter_batches(path, ["_row"]))


def test_abandoned_stream_reports_partial_totals(edition):
    seen = []
    gen = st.csv_stream(st.iter_batches(edition[0]), StreamTotals(), on_close=seen.append)
    first = next(gen)
    gen.close()  # the client went away
    assert len(seen) == 1 and not seen[0].completed and seen[0].bytes == len(first)


def test_file_stream_whole_and_ranges(edition):
    path, _ = edition
    raw = path.read_bytes()
    totals = StreamTotals()
    assert _drain(st.file_stream(path, totals)) == raw and totals.bytes == len(raw)
    for start, end in [
        (0, 0),
        (10, 99),
        (len(raw) - 5, len(raw) - 1),
        (0, len(raw) - 1),
        (1 << 20, (1 << 20) + 5),
    ]:
        assert _drain(st.file_stream(path, StreamTotals(), start=start, end=end)) == raw[start : end + 1]


SIZE = 1000


@pytest.mark.parametrize(
    ("header", "want"),
    [
        (None, None),
        ("", None),
        ("bytes=0-0", (0, 0)),
        ("bytes=0-499", (0, 499)),
        ("bytes=500-", (500, 999)),
        ("bytes=-200", (800, 999)),
        ("bytes=-5000", (0, 999)),
        ("bytes=900-5000", (900, 999)),
        ("BYTES = 1-2", (1, 2)),
        ("bytes=0-1,5-6", None),  # multiple ranges: ignored, the whole file is sent (RFC 9110)
        ("items=0-1", None),
        ("bytes=5-1", None),
        ("bytes=abc", None),
        ("bytes=-", None),
        ("bytes=1-x", None),
        ("bytes=+1-2", None),
    ],
)
def test_parse_range(header, want):
    assert parse_range(header, SIZE) == want


@pytest.mark.parametrize(
    ("header", "size"),
    [("bytes=1000-", 1000), ("bytes=5000-6000", 1000), ("bytes=-0", 1000), ("bytes=0-", 0), ("bytes=-10", 0)],
)
def test_unsatisfiable_ranges_raise_416(header, size):
    with pytest.raises(RangeNotSatisfiable) as err:
        parse_range(header, size)
    assert err.value.status == 416 and err.value.extra["content_range"] == f"bytes */{size}"


def test_etag_and_conditional_requests():
    lm = dt.datetime(2024, 5, 1, 8, 30, 15, 999, tzinfo=dt.UTC)
    tag = st.etag("ab" * 32, "csv-bom")
    assert tag.startswith('"') and tag.endswith('"') and tag != st.etag("ab" * 32, "csv")
    assert st.etag('x"y', 'a"b').count('"') == 2  # nothing from the input can break the quoting
    assert st.http_date(lm) == "Wed, 01 May 2024 08:30:15 GMT"
    assert st.not_modified(tag, lm, if_none_match=tag, if_modified_since=None)
    assert st.not_modified(tag, lm, if_none_match=f'"other", W/{tag}', if_modified_since=None)
    assert st.not_modified(tag, lm, if_none_match="*", if_modified_since=None)
    assert not st.not_modified(tag, lm, if_none_match='"other"', if_modified_since=st.http_date(lm))
    assert st.not_modified(tag, lm, if_none_match=None, if_modified_since=st.http_date(lm))
    earlier = st.http_date(lm - dt.timedelta(seconds=1))
    assert not st.not_modified(tag, lm, if_none_match=None, if_modified_since=earlier)
    assert not st.not_modified(tag, lm, if_none_match=None, if_modified_since="garbage")
    assert st.range_applies(None, tag, lm) and st.range_applies(tag, tag, lm)
    assert not st.range_applies('"other"', tag, lm)
    assert st.range_applies(st.http_date(lm), tag, lm) and not st.range_applies(earlier, tag, lm)
