"""Ingest: each bad input from the issue gets a clear domain error or a precise report."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalog import samples
from catalog.fields import Schema
from catalog.ingest import IngestLimits, ingest
from common.errors import Invalid, TooLarge, Unsupported

SCHEMA = Schema.parse(
    {
        "key": "id",
        "fields": [
            {"name": "id", "label": "编号", "type": "integer", "required": True, "unique": True},
            {"name": "name", "label": "名称", "type": "string", "tag": "org_name"},
            {"name": "day", "label": "日期", "type": "date", "tag": "date"},
            {"name": "amount", "label": "金额", "type": "number", "tag": "amount"},
        ],
    }
)


def _run(tmp_path: Path, data: bytes | str, name: str = "up.csv", **kw):
    src = tmp_path / name
    src.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    out = tmp_path / "out" / "v.parquet"
    out.parent.mkdir(exist_ok=True)
    return ingest(src, schema=kw.pop("schema", SCHEMA), dest_parquet=out, **kw), out


def _fails(tmp_path: Path, exc: type, match: str, data: bytes | str, name: str = "up.csv", **kw) -> None:
    with pytest.raises(exc, match=match):
        _run(tmp_path, data, name, **kw)
    assert list((tmp_path / "out").iterdir()) == []  # nothing left behind, not even a .part file


def test_clean_csv_is_typed_not_text(tmp_path: Path) -> None:
    res, out = _run(tmp_path, "id,name,day,amount\n1,甲公司,2024-01-02,3.5\n2,乙公司,2024/02/29,\n")
    assert res.ok and res.rows == 2 and res.encoding == "utf-8" and res.format == "csv"
    t = pq.read_table(out)
    assert t.schema.field("id").type == pa.int64() and t.schema.field("day").type == pa.date32()
    assert t.schema.field("amount").type == pa.float64() and t.column("amount").to_pylist() == [3.5, None]


@pytest.mark.parametrize("enc", ["utf-8-sig", "gbk", "gb18030"])
def test_encodings_are_detected(tmp_path: Path, enc: str) -> None:
    text = "id,name,day,amount\n1,成都天府软件园有限公司,2024-01-02,1\n2,達州𠀀商贸,2024-01-03,2\n"
    if enc == "gbk":
        text = text.replace("達州𠀀", "达州")  # GBK has neither traditional extras nor CJK ext. B
    res, out = _run(tmp_path, text.encode(enc))
    assert res.encoding == enc
    assert pq.read_table(out).column("name").to_pylist()[0] == "成都天府软件园有限公司"


def test_quotes_and_newlines_inside_fields(tmp_path: Path) -> None:
    res, out = _run(tmp_path, 'id,name,day,amount\n1,"甲, ""乙""\n丙",2024-01-02,1\n2,丁,2024-01-03,2\n')
    assert res.ok and pq.read_table(out).column("name").to_pylist()[0] == '甲, "乙"\n丙'


def test_type_failures_carry_row_numbers(tmp_path: Path) -> None:
    rows = "".join(f"{i},n,2024-01-01,1\n" for i in range(1, 9))
    rows = rows.replace("3,n,2024-01-01", "x3,n,2024-02-30").replace("7,n,2024-01-01,1", "7,n,2024-01-01,abc")
    res, _ = _run(tmp_path, "id,name,day,amount\n" + rows)
    by = {(p.kind, p.column): p for p in res.problems}
    assert by[("type", "id")].rows == [3] and by[("type", "day")].rows == [3]
    assert by[("type", "amount")].rows == [7] and not res.ok
    with pytest.raises(Invalid) as err:
        res.raise_for_problems()
    assert err.value.extra["conformance"]


def test_ragged_rows_reported_by_data_row_with_later_rows_still_numbered_right(tmp_path: Path) -> None:
    data = 'id,name,day,amount\n1,"a\nb",2024-01-01,1\n2,b\n3,c,2024-01-01,1,extra\nx4,d,2024-01-01,1\n'
    res, _ = _run(tmp_path, data)
    by = {p.kind: p for p in res.problems}
    assert by["ragged_row"].count == 2 and by["ragged_row"].rows == [2, 3]
    assert by["type"].rows == [4] and res.rows == 2


def test_missing_and_extra_columns(tmp_path: Path) -> None:
    res, out = _run(tmp_path, "id,name,secret\n1,a,x\n")
    kinds = {(p.kind, p.column, p.severity) for p in res.problems}
    assert ("extra_column", "secret", "error") in kinds and ("missing_column", "day", "warning") in kinds
    assert pq.read_table(out).column_names == SCHEMA.names  # stored per the schema; the extra is dropped
    res, _ = _run(tmp_path, "name,day\na,2024-01-01\n")
    assert ("missing_column", "id", "error") in {(p.kind, p.column, p.severity) for p in res.problems}


def test_formula_cells_are_kept_as_text_and_flagged(tmp_path: Path) -> None:
    data = (
        "id,name,day,amount\n1,=cmd|' /C calc'!A0,2024-01-01,1\n2,@SUM(A1),2024-01-01,1\n3,-5,2024-01-01,-5\n"
    )
    res, out = _run(tmp_path, data)
    flag = next(p for p in res.problems if p.kind == "formula")
    assert flag.rows == [1, 2] and flag.severity == "warning" and res.ok
    assert pq.read_table(out).column("name").to_pylist()[0] == "=cmd|' /C calc'!A0"


def test_empty_header_only_and_blank(tmp_path: Path) -> None:
    _fails(tmp_path, Invalid, "empty", b"")
    _fails(tmp_path, Invalid, "empty", "\n\n  \n")
    _fails(tmp_path, Invalid, "no data rows", "id,name,day,amount\n")


def test_duplicate_and_empty_header_names(tmp_path: Path) -> None:
    _fails(tmp_path, Invalid, "duplicate column names", "id,name,name\n1,a,b\n")
    _fails(tmp_path, Invalid, "empty column name", "id,,day\n1,a,b\n")


def test_ten_thousand_columns(tmp_path: Path) -> None:
    header = ",".join(f"c{i}" for i in range(10_000))
    _fails(tmp_path, TooLarge, "10000 columns", header + "\n" + ",".join("1" * 10_000) + "\n")


def test_hundred_megabyte_field(tmp_path: Path) -> None:
    src = tmp_path / "big.csv"
    with src.open("wb") as fh:
        fh.write(b"id,name,day,amount\n1,")
        chunk = b"x" * (1 << 20)
        for _ in range(100):
            fh.write(chunk)
        fh.write(b",2024-01-01,1\n")
    (tmp_path / "out").mkdir()
    with pytest.raises(TooLarge, match="larger than"):
        ingest(src, schema=SCHEMA, dest_parquet=tmp_path / "out" / "v.parquet")
    assert list((tmp_path / "out").iterdir()) == []
    # a field under the block size but over the field limit is caught too
    _fails(
        tmp_path,
        TooLarge,
        "field size limit",
        "id,name,day,amount\n1," + "y" * 300_000 + ",2024-01-01,1\n",
        limits=IngestLimits(max_field_bytes=100_000),
    )


def test_wrong_and_mixed_encoding(tmp_path: Path) -> None:
    _fails(tmp_path, Invalid, "not valid UTF-8, GBK or GB18030", b"id,name\n1,\xff\xfe\xfd\xff\x80\x80\n")
    good = "id,name,day,amount\n" + "".join(f"{i},成都,2024-01-01,1\n" for i in range(1, 80_000))
    mixed = good.encode("utf-8") + "99,达州市\n".encode("gbk")
    _fails(tmp_path, Invalid, "mixed or wrong encoding", mixed)
    _fails(tmp_path, Unsupported, "UTF-16", "id,name\n1,a\n".encode("utf-16"))


def test_a_file_that_is_not_what_its_name_says(tmp_path: Path) -> None:
    _fails(tmp_path, Unsupported, "PNG", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, name="data.csv")
    _fails(tmp_path, Unsupported, "is CSV, not XLSX", "id\n1\n", name="data.xlsx", fmt="xlsx")
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr("readme.txt", "hello")
    _fails(tmp_path, Unsupported, "not an XLSX", zbuf.getvalue(), name="data.xlsx")


def test_parquet_with_the_wrong_schema_is_rejected(tmp_path: Path) -> None:
    src = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"id": ["1"], "name": [5], "day": ["2024-01-01"], "amount": [1.0]}), src)
    (tmp_path / "out").mkdir()
    with pytest.raises(Invalid, match="wrong schema: name is int64 but registered as string"):
        ingest(src, schema=SCHEMA, dest_parquet=tmp_path / "out" / "v.parquet")
    pq.write_table(pa.table({"id": [1], "other": [1]}), src)
    with pytest.raises(Invalid, match="wrong schema"):
        ingest(src, schema=SCHEMA, dest_parquet=tmp_path / "out" / "v.parquet")
    assert list((tmp_path / "out").iterdir()) == []


def test_parquet_text_columns_are_typed_with_row_numbers(tmp_path: Path) -> None:
    s = samples.generate("population", 300, seed=8, defects=0.01)
    src = samples.write(s, tmp_path / "p.parquet", fmt="parquet")
    res = ingest(src, schema=s.schema, dest_parquet=tmp_path / "v.parquet")
    assert next(p for p in res.problems if p.kind == "type").rows == s.defects["impossible_date"]


def test_xlsx_first_or_named_sheet_with_formulas_flagged(tmp_path: Path) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "封面"
    ws.append(["说明"])
    data = wb.create_sheet("数据")
    data.append(["id", "name", "day", "amount"])
    data.append([1, "=1+1", "2024-01-02", 2.5])
    data.append([2, "乙", None, 3])
    src = tmp_path / "up.xlsx"
    wb.save(src)
    (tmp_path / "out").mkdir()
    res = ingest(src, schema=SCHEMA, sheet="数据", dest_parquet=tmp_path / "out" / "v.parquet")
    assert res.rows == 2 and res.format == "xlsx"
    assert next(p for p in res.problems if p.kind == "formula").rows == [1]
    assert pq.read_table(tmp_path / "out" / "v.parquet").column("name").to_pylist() == ["=1+1", "乙"]
    with pytest.raises(Invalid, match="no sheet"):
        ingest(src, schema=SCHEMA, sheet="nope", dest_parquet=tmp_path / "out" / "v.parquet")
    with pytest.raises(Invalid, match="no data rows"):  # the first sheet is a cover page, no rows
        ingest(src, schema=SCHEMA, dest_parquet=tmp_path / "out" / "v2.parquet")


def test_xlsx_zip_bomb_is_refused_before_inflating(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("xl/workbook.xml", "<workbook/>")
        zf.writestr("xl/worksheets/sheet1.xml", b" " * (40 << 20))
    _fails(tmp_path, TooLarge, "zip bomb", buf.getvalue(), name="bomb.xlsx")
    _fails(
        tmp_path,
        TooLarge,
        "expands to",
        buf.getvalue(),
        name="bomb.xlsx",
        limits=IngestLimits(xlsx_max_uncompressed=10 << 20),
    )


def test_sample_library_round_trip_csv_gbk(tmp_path: Path) -> None:
    s = samples.generate("population", 2000, seed=2, defects=0.005)
    src = samples.write(s, tmp_path / "p.csv", encoding="gbk")
    res = ingest(src, schema=s.schema, dest_parquet=tmp_path / "v.parquet")
    assert res.encoding == "gbk" and res.rows == 2000
    assert [(p.kind, p.column, p.rows) for p in res.problems] == [
        ("type", "birth_date", s.defects["impossible_date"])
    ]


def test_schema_validation_says_what_to_fix() -> None:
    with pytest.raises(Invalid, match="snake_case"):
        Schema.parse({"fields": [{"name": "Bad Name", "label": "x"}]})
    with pytest.raises(Invalid, match="duplicate field names"):
        Schema.parse({"fields": [{"name": "a", "label": "x"}, {"name": "a", "label": "y"}]})
    with pytest.raises(Invalid, match="partner 'lat'"):
        Schema.parse({"fields": [{"name": "lon", "label": "经度", "type": "number", "tag": "geo_point"}]})
    with pytest.raises(Invalid, match="key"):
        Schema.parse({"key": "nope", "fields": [{"name": "a", "label": "x"}]})
