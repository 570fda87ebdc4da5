"""Seeded synthetic base libraries (population, legal persons, geospatial, certificates), vectorised.

`generate(library, rows, seed=, defects=)` returns a `Sample`: a DataFrame of text/number columns,
the library's canonical `Schema`, and the 1-based data-row numbers of every injected defect by kind,
so tests can assert exact counts. Same arguments give identical output (numpy PCG64 streams).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from catalog.fields import Schema
from catalog.validators import ID_CHECK, ID_WEIGHTS, USCC_ALPHABET, USCC_WEIGHTS
from common.errors import Invalid

LIBRARIES = ("population", "legal_person", "geospatial", "certificate")
DEFECT_KINDS = {
    "population": ("check_digit", "duplicate", "impossible_date"),
    "legal_person": ("check_digit", "duplicate", "impossible_date"),
    "geospatial": ("out_of_china", "duplicate", "bad_admin_code"),
    "certificate": ("check_digit", "duplicate", "impossible_date"),
}
MAX_ROWS = 50_000_000

# fmt: off
# (code, city, district, lon, lat, weight): Chengdu and Dazhou districts, GB/T 2260.
DISTRICTS = [
    ("510104", "成都市", "锦江区", 104.083, 30.657, 6), ("510105", "成都市", "青羊区", 104.062, 30.674, 6),
    ("510106", "成都市", "金牛区", 104.052, 30.692, 8), ("510107", "成都市", "武侯区", 104.043, 30.642, 9),
    ("510108", "成都市", "成华区", 104.101, 30.660, 7), ("510112", "成都市", "龙泉驿区", 104.275, 30.557, 5),
    ("510113", "成都市", "青白江区", 104.251, 30.878, 2), ("510114", "成都市", "新都区", 104.159, 30.823, 5),
    ("510115", "成都市", "温江区", 103.856, 30.682, 3), ("510116", "成都市", "双流区", 103.923, 30.574, 6),
    ("510117", "成都市", "郫都区", 103.901, 30.795, 4), ("510118", "成都市", "新津区", 103.811, 30.410, 2),
    ("511702", "达州市", "通川区", 107.505, 31.214, 3), ("511703", "达州市", "达川区", 107.511, 31.196, 3),
    ("511722", "达州市", "宣汉县", 107.727, 31.354, 2), ("511723", "达州市", "开江县", 107.869, 31.083, 1),
    ("511724", "达州市", "大竹县", 107.204, 30.741, 2), ("511725", "达州市", "渠县", 106.973, 30.837, 2),
    ("511781", "达州市", "万源市", 108.034, 32.081, 1),
]
SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘"
                "于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江"
                "尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤")
GIVEN = list("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂华玉萍红娥玲芬燕彬鹏辉建国"
             "志文斌宇浩凯俊峰欣怡晨阳雪梅婷琳佳瑶蓉川蜀")
ROADS = ["人民南路", "天府大道", "蜀都大道", "一环路", "二环路", "春熙路", "红星路", "建设路", "西大街",
         "通川中路", "朝阳路", "凤凰大道", "南外大街", "滨河路", "金沙路", "光华大道", "科华北路"]
ETHNICITIES = np.array(["汉族"] * 92 + ["彝族"] * 4 + ["藏族"] * 2 + ["羌族", "土家族"])
ORG_WORDS = ["天府", "蜀汉", "锦城", "巴山", "川渝", "达城", "金沙", "峨眉", "青城", "嘉陵", "华西", "通川"]
ORG_TRADES = [("科技", "软件和信息技术服务业"), ("商贸", "批发和零售业"), ("建设", "建筑业"),
              ("物流", "交通运输业"), ("餐饮管理", "住宿和餐饮业"), ("农业开发", "农林牧渔业"),
              ("医药", "医药制造业")]
ORG_SUFFIX = ["有限公司", "有限责任公司", "股份有限公司"]
STATUSES = np.array(["存续"] * 80 + ["在业"] * 12 + ["迁出"] * 3 + ["吊销"] * 3 + ["注销"] * 2)
POI_CATEGORIES = ["学校", "医院", "公园", "政务服务中心", "地铁站", "商场", "社区卫生服务中心", "图书馆"]
CERT_TYPES = ["营业执照", "食品经营许可证", "道路运输经营许可证", "建筑业企业资质证书"]


def _f(name: str, label: str, typ: str, tag: str, flags: str = "", **extra: Any) -> dict[str, Any]:
    """A field dict; flags: r = required, u = unique."""
    return {"name": name, "label": label, "type": typ, "tag": tag,
            "required": "r" in flags, "unique": "u" in flags, **extra}


SCHEMAS: dict[str, dict[str, Any]] = {
    "population": {"key": "person_id", "fields": [
        _f("person_id", "公民身份号码", "string", "id_number", "ru"),
        _f("name", "姓名", "string", "person_name", "r"),
        _f("gender", "性别", "string", "gender", "r", allowed=["男", "女"]),
        _f("birth_date", "出生日期", "date", "birth_date", "r"),
        _f("ethnicity", "民族", "string", "plain"),
        _f("household_address_code", "户籍地行政区划代码", "string", "admin_code", "r"),
        _f("household_address", "户籍地址", "string", "address"),
        _f("phone", "联系电话", "string", "phone"),
        _f("updated_at", "更新时间", "datetime", "plain")]},
    "legal_person": {"key": "uscc", "fields": [
        _f("uscc", "统一社会信用代码", "string", "usc_code", "ru"),
        _f("name", "名称", "string", "org_name", "r"),
        _f("legal_representative", "法定代表人", "string", "person_name"),
        _f("registered_capital", "注册资本(万元)", "number", "amount", minimum=0),
        _f("established_date", "成立日期", "date", "date", "r"),
        _f("industry", "行业", "string", "plain"),
        _f("admin_code", "登记地行政区划代码", "string", "admin_code", "r"),
        _f("address", "住所", "string", "address"),
        _f("status", "登记状态", "string", "plain", "r", allowed=["存续", "在业", "迁出", "吊销", "注销"])]},
    "geospatial": {"key": "poi_id", "fields": [
        _f("poi_id", "兴趣点编号", "string", "plain", "ru"),
        _f("name", "名称", "string", "plain", "r"),
        _f("category", "类别", "string", "plain", "r", allowed=POI_CATEGORIES),
        _f("admin_code", "行政区划代码", "string", "admin_code", "r"),
        # A public facility's address is not personal information: plain, not the G3 `address` tag.
        _f("address", "地址", "string", "plain"),
        _f("lon", "经度(CGCS2000)", "number", "geo_point", "r", minimum=-180, maximum=180),
        _f("lat", "纬度(CGCS2000)", "number", "geo_point", "r", minimum=-90, maximum=90)]},
    "certificate": {"key": "cert_no", "fields": [
        _f("cert_no", "证照编号", "string", "certificate_no", "ru"),
        _f("cert_type", "证照类型", "string", "plain", "r", allowed=CERT_TYPES),
        _f("holder_uscc", "持证主体统一社会信用代码", "string", "usc_code", "r"),
        _f("holder_name", "持证主体名称", "string", "org_name", "r"),
        _f("issuing_authority", "发证机关", "string", "org_name"),
        _f("issue_date", "发证日期", "date", "date", "r"),
        _f("expiry_date", "有效期至", "date", "date"),
        _f("status", "证照状态", "string", "plain", "r", allowed=["有效", "注销"])]},
}

_COMMON = {"update_cycle": "monthly", "licence": "CC-BY-4.0", "spatial_coverage": "四川省成都市、达州市",
           "temporal_coverage": "1995-01-01/2024-06-30", "language": "zh-CN"}
REGISTRATIONS: dict[str, dict[str, Any]] = {
    "population": {**_COMMON, "code": "510100-RK-0001", "title": "人口基础信息（样例）",
                   "description": "成都市、达州市户籍人口基础信息合成样例："
                                  "身份号码、姓名、性别、出生日期、户籍地址、联系电话。",
                   "category": "population", "keywords": ["人口", "户籍", "基础库"],
                   "department": "成都市公安局",
                   "open_type": "conditional", "share_type": "conditional",
                   "contact": {"name": "数据管理处", "email": "data@cdgaj.example.cn",
                               "phone": "028-12345678"}},
    "legal_person": {**_COMMON, "code": "510100-FR-0001", "title": "法人基础信息（样例）",
                     "description": "成都市、达州市企业法人登记信息合成样例：统一社会信用代码、"
                                    "名称、法定代表人、注册资本、住所、登记状态。",
                     "category": "legal_person", "keywords": ["法人", "企业", "统一社会信用代码", "基础库"],
                     "department": "成都市市场监督管理局", "open_type": "unconditional",
                     "share_type": "conditional",
                     "contact": {"name": "信息中心", "email": "data@cdscjg.example.cn",
                               "phone": "028-12345679"}},
    "geospatial": {**_COMMON, "code": "510100-KJ-0001", "title": "公共服务兴趣点（样例）",
                   "description": "成都市、达州市学校、医院、公园、政务服务中心等"
                                  "兴趣点坐标合成样例（CGCS2000）。",
                   "category": "geospatial", "keywords": ["空间地理", "兴趣点", "坐标", "基础库"],
                   "department": "成都市规划和自然资源局", "open_type": "unconditional",
                   "share_type": "unconditional", "update_cycle": "quarterly",
                   "contact": {"name": "测绘地理信息处", "email": "data@cdgtj.example.cn",
                               "phone": "028-12345680"}},
    "certificate": {**_COMMON, "code": "510100-ZZ-0001", "title": "电子证照（样例）",
                    "description": "营业执照等电子证照目录合成样例，"
                                   "持证主体关联法人库统一社会信用代码，含发证与有效期。",
                    "category": "certificate", "keywords": ["电子证照", "营业执照", "许可证", "基础库"],
                    "department": "成都市政务服务管理和网络理政办公室", "open_type": "conditional",
                    "share_type": "conditional",
                    "contact": {"name": "电子证照科", "email": "data@cdzwfw.example.cn",
                               "phone": "028-12345681"}},
}
# fmt: on


@dataclass
class Sample:
    """A generated library: data, schema, and the 1-based row numbers of each injected defect kind."""

    library: str
    frame: pd.DataFrame
    schema: Schema
    defects: dict[str, list[int]] = field(default_factory=dict)

    @property
    def defect_rows(self) -> int:
        return sum(len(v) for v in self.defects.values())


def schema_for(library: str) -> Schema:
    """The canonical registered schema of a base library."""
    _known(library)
    return Schema.parse(SCHEMAS[library])


def registration_for(library: str) -> dict[str, Any]:
    """A suggested dataset registration (code, title, category, open type, ...) for a base library."""
    _known(library)
    return {**REGISTRATIONS[library], "schema": SCHEMAS[library]}


def _known(library: str) -> None:
    if library not in LIBRARIES:
        raise Invalid(f"unknown library {library[:40]!r}: choose one of {', '.join(LIBRARIES)}")


def generate(
    library: str,
    rows: int,
    *,
    seed: int = 20240601,
    defects: float = 0.0,
    legal_person_rows: int | None = None,
) -> Sample:
    """Generate `rows` rows of a library; `defects` is the fraction of rows per defect kind."""
    _known(library)
    if not 1 <= rows <= MAX_ROWS:
        raise Invalid(f"rows must be between 1 and {MAX_ROWS}")
    if not 0.0 <= defects <= 0.3:
        raise Invalid("defects must be a rate between 0 and 0.3 (per defect kind)")
    rng = np.random.default_rng([seed, LIBRARIES.index(library)])
    if library == "population":
        frame = _population(rng, rows)
    elif library == "legal_person":
        frame = _legal_persons(rng, rows)
    elif library == "geospatial":
        frame = _geospatial(rng, rows)
    else:
        lp = _legal_persons(np.random.default_rng([seed, 1]), legal_person_rows or rows)
        frame = _certificates(rng, rows, lp)
    sample = Sample(library, frame, schema_for(library))
    if defects > 0:
        _inject(sample, np.random.default_rng([seed, 99, LIBRARIES.index(library)]), defects)
    return sample


# ---------------------------------------------------------------- building blocks
def _digits(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    return rng.integers(0, 10, size=(n, width), dtype=np.uint8)


def _text(mat: np.ndarray) -> pd.Series:
    """(n, w) uint8 ASCII matrix -> a str Series, zero-copy through an Arrow string array."""
    n, w = mat.shape
    offsets = pa.py_buffer(np.arange(0, (n + 1) * w, w, dtype=np.int32))
    return pd.Series(
        pa.StringArray.from_buffers(n, offsets, pa.py_buffer(np.ascontiguousarray(mat))), dtype="str"
    )


def _num_bytes(x: np.ndarray, width: int) -> np.ndarray:
    """Non-negative ints -> (n, width) zero-padded ASCII digits."""
    x = np.asarray(x, dtype=np.int64)
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (48 + (x[:, None] // powers) % 10).astype(np.uint8)


def _civil(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Days since 1970-01-01 -> (year, month, day), vectorised (H. Hinnant's civil_from_days)."""
    z = days.astype(np.int64) + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = np.where(mp < 10, mp + 3, mp - 9)
    return yoe + era * 400 + (m <= 2), m, d


def _date_text(d: np.ndarray) -> pd.Series:
    """datetime64[D] -> 'YYYY-MM-DD' str Series."""
    y, m, dd = _civil(d.astype(np.int64))
    dash = np.full((len(d), 1), ord("-"), dtype=np.uint8)
    return _text(np.hstack([_num_bytes(y, 4), dash, _num_bytes(m, 2), dash, _num_bytes(dd, 2)]))


def _datetime_text(t: np.ndarray) -> pd.Series:
    """datetime64[s] -> 'YYYY-MM-DD HH:MM:SS' str Series."""
    secs = t.astype(np.int64)
    day, sod = np.divmod(secs, 86400)
    y, m, d = _civil(day)
    dash, sp, col = (np.full((len(t), 1), ord(c), dtype=np.uint8) for c in "- :")
    parts = [
        _num_bytes(y, 4),
        dash,
        _num_bytes(m, 2),
        dash,
        _num_bytes(d, 2),
        sp,
        _num_bytes(sod // 3600, 2),
        col,
        _num_bytes(sod // 60 % 60, 2),
        col,
        _num_bytes(sod % 60, 2),
    ]
    return _text(np.hstack(parts))


def _cat(*parts: Any) -> np.ndarray:
    out = np.asarray(parts[0]).astype(str)
    for p in parts[1:]:
        out = np.strings.add(out, np.asarray(p).astype(str))
    return out


def _pick(rng: np.random.Generator, items: list[Any] | np.ndarray, n: int) -> np.ndarray:
    return np.asarray(items)[rng.integers(0, len(items), size=n)]


def _district_idx(rng: np.random.Generator, n: int) -> np.ndarray:
    w = np.array([d[5] for d in DISTRICTS], dtype=float)
    return rng.choice(len(DISTRICTS), size=n, p=w / w.sum())


def _dist(col: int) -> np.ndarray:
    return np.array([d[col] for d in DISTRICTS])


def _names(rng: np.random.Generator, n: int) -> np.ndarray:
    two = rng.random(n) < 0.7
    given = np.where(two, np.strings.add(_pick(rng, GIVEN, n), _pick(rng, GIVEN, n)), _pick(rng, GIVEN, n))
    return np.strings.add(_pick(rng, SURNAMES, n), given)


def _address(rng: np.random.Generator, didx: np.ndarray) -> np.ndarray:
    n = len(didx)
    return _cat("四川省", _dist(1)[didx], _dist(2)[didx], _pick(rng, ROADS, n), rng.integers(1, 999, n), "号")


def _dates(rng: np.random.Generator, n: int, start: str, end: str) -> np.ndarray:
    lo, hi = np.datetime64(start, "D").astype(np.int64), np.datetime64(end, "D").astype(np.int64)
    return rng.integers(lo, hi + 1, size=n).astype("datetime64[D]")


def _ymd(d: np.ndarray) -> np.ndarray:
    """datetime64[D] -> (n, 8) uint8 ASCII 'YYYYMMDD'."""
    y, m, dd = _civil(d.astype(np.int64))
    return np.hstack([_num_bytes(y, 4), _num_bytes(m, 2), _num_bytes(dd, 2)])


def _id_numbers(
    rng: np.random.Generator, region: np.ndarray, birth: np.ndarray, male: np.ndarray
) -> pd.Series:
    """GB 11643 IDs, unique: colliding sequence numbers are redrawn (keeping the gender parity)."""
    n = len(region)
    body = np.zeros((n, 18), dtype=np.uint8)
    body[:, :6] = np.asarray(region).astype("S6").view(np.uint8).reshape(-1, 6)
    body[:, 6:14] = _ymd(birth)
    todo = np.arange(n)
    while len(todo):
        seq = rng.integers(0, 500, size=len(todo)) * 2 + male[todo]
        body[todo, 14] = 48 + seq // 100
        body[todo, 15] = 48 + seq // 10 % 10
        body[todo, 16] = 48 + seq % 10
        keys = np.ascontiguousarray(body[:, :17]).view("S17").ravel()
        todo = np.flatnonzero(pd.Series(keys).duplicated().to_numpy())
    body[:, 17] = ID_CHECK[(body[:, :17].astype(np.int64) - 48) @ ID_WEIGHTS % 11]
    return _text(body)


def _uscc(rng: np.random.Generator, n: int, region: np.ndarray) -> pd.Series:
    """GB 32100 codes, unique: the organisation part is an affine bijection of the row index."""
    alpha = np.frombuffer(USCC_ALPHABET.encode(), dtype=np.uint8)
    v = np.zeros((n, 18), dtype=np.int64)
    v[:, 0], v[:, 1] = 9, 1  # registered by market regulation (9), enterprise (1)
    v[:, 2:8] = np.asarray(region).astype("S6").view(np.uint8).reshape(-1, 6) - 48
    mod = 31**8
    a, b = 7_368_787, int(rng.integers(0, mod))  # a is coprime with 31, so i -> a*i+b is a bijection
    org = (np.arange(n, dtype=np.int64) * a + b) % mod
    for i in range(8):
        v[:, 15 - i] = org % 31
        org //= 31
    v[:, 16] = rng.integers(0, 31, size=n)
    v[:, 17] = (31 - (v[:, :17] @ np.asarray(USCC_WEIGHTS)) % 31) % 31
    return _text(alpha[v].astype(np.uint8))


def _phones(rng: np.random.Generator, n: int) -> pd.Series:
    m = _digits(rng, n, 11) + 48
    m[:, 0] = ord("1")
    m[:, 1] = np.frombuffer(b"3456789", dtype=np.uint8)[rng.integers(0, 7, n)]
    return _text(m)


# ---------------------------------------------------------------- the four libraries
def _population(rng: np.random.Generator, n: int) -> pd.DataFrame:
    hh = _district_idx(rng, n)
    born_here = rng.random(n) < 0.85
    birth_region = np.where(born_here, hh, _district_idx(rng, n))
    birth = _dates(rng, n, "1940-01-01", "2010-12-31")
    male = rng.integers(0, 2, n)
    updated = np.datetime64("2023-01-01T00:00:00", "s") + rng.integers(0, 900 * 86400, n).astype(
        "timedelta64[s]"
    )
    return pd.DataFrame(
        {
            "person_id": _id_numbers(rng, _dist(0)[birth_region], birth, male),
            "name": _names(rng, n),
            "gender": np.where(male == 1, "男", "女"),
            "birth_date": _date_text(birth),
            "ethnicity": _pick(rng, ETHNICITIES, n),
            "household_address_code": _dist(0)[hh],
            "household_address": _address(rng, hh),
            "phone": _phones(rng, n),
            "updated_at": _datetime_text(updated),
        }
    )


def _legal_persons(rng: np.random.Generator, n: int) -> pd.DataFrame:
    d = _district_idx(rng, n)
    trade = rng.integers(0, len(ORG_TRADES), n)
    name = _cat(
        _dist(1)[d],
        _pick(rng, ORG_WORDS, n),
        _pick(rng, ORG_WORDS, n),
        np.array([t[0] for t in ORG_TRADES])[trade],
        _pick(rng, ORG_SUFFIX, n),
    )
    capital = np.round(rng.lognormal(5.5, 1.2, n), 2)  # 万元
    return pd.DataFrame(
        {
            "uscc": _uscc(rng, n, _dist(0)[d]),
            "name": name,
            "legal_representative": _names(rng, n),
            "registered_capital": capital,
            "established_date": _date_text(_dates(rng, n, "1995-01-01", "2024-06-30")),
            "industry": np.array([t[1] for t in ORG_TRADES])[trade],
            "admin_code": _dist(0)[d],
            "address": _address(rng, d),
            "status": _pick(rng, STATUSES, n),
        }
    )


def _geospatial(rng: np.random.Generator, n: int) -> pd.DataFrame:
    d = _district_idx(rng, n)
    cat = _pick(rng, POI_CATEGORIES, n)
    return pd.DataFrame(
        {
            "poi_id": _text(
                np.hstack(
                    [np.tile(np.frombuffer(b"POI", np.uint8), (n, 1)), _num_bytes(np.arange(1, n + 1), 9)]
                )
            ),
            "name": _cat(_dist(2)[d], _pick(rng, ROADS, n), cat),
            "category": cat,
            "admin_code": _dist(0)[d],
            "address": _address(rng, d),
            "lon": np.round(_dist(3)[d] + rng.normal(0, 0.03, n), 6),
            "lat": np.round(_dist(4)[d] + rng.normal(0, 0.03, n), 6),
        }
    )


def _certificates(rng: np.random.Generator, n: int, lp: pd.DataFrame) -> pd.DataFrame:
    holder = rng.integers(0, len(lp), n)
    holder[: min(n, len(lp))] = np.arange(min(n, len(lp)))  # every legal person first gets its licence
    ctype = np.where(np.arange(n) < len(lp), 0, rng.integers(1, len(CERT_TYPES), n))
    issue = _dates(rng, n, "2015-01-01", "2024-06-30")
    years = np.where(ctype == 0, 30, 5).astype("timedelta64[D]") * 365
    kinds = np.frombuffer(b"SCYYZZSCSPJYSCDLYSSCJZZZ", np.uint8).reshape(4, 6)
    return pd.DataFrame(
        {
            "cert_no": _text(np.hstack([kinds[ctype], _num_bytes(np.arange(1, n + 1), 10)])),
            "cert_type": np.array(CERT_TYPES)[ctype],
            "holder_uscc": lp["uscc"].to_numpy()[holder],
            "holder_name": lp["name"].to_numpy()[holder],
            "issuing_authority": _cat(
                np.strings.slice(lp["address"].to_numpy()[holder].astype(str), 3, 6), "市场监督管理局"
            ),
            "issue_date": _date_text(issue),
            "expiry_date": _date_text(issue + years),
            "status": _pick(rng, np.array(["有效"] * 9 + ["注销"]), n),
        }
    )


# ---------------------------------------------------------------- defects
def _inject(sample: Sample, rng: np.random.Generator, rate: float) -> None:
    """Spoil round(rate*rows) distinct rows per kind; duplicates copy the key of an untouched row."""
    df, kinds = sample.frame, DEFECT_KINDS[sample.library]
    n = len(df)
    k = round(rate * n)
    if k == 0 or n < 4:
        return
    k = min(k, n // (len(kinds) + 1))
    chosen = rng.permutation(n)
    key = sample.schema.key or df.columns[0]
    code_col, date_col = {
        "population": ("person_id", "birth_date"),
        "legal_person": ("uscc", "established_date"),
        "certificate": ("holder_uscc", "issue_date"),
    }.get(sample.library, (None, None))
    for i, kind in enumerate(kinds):
        rows = np.sort(chosen[i * k : (i + 1) * k])
        col = df.columns.get_loc
        if kind == "duplicate":
            src = np.sort(chosen[len(kinds) * k : len(kinds) * k + k])  # distinct, never spoiled rows
            df.iloc[rows, col(key)] = df.iloc[src, col(key)].to_numpy()
        elif kind == "check_digit":
            vals = df.iloc[rows, col(code_col)].astype(str)
            last = vals.str[-1].to_numpy()
            alt = np.where(last == "0", "1", "0")  # always a different, well-shaped check char
            df.iloc[rows, col(code_col)] = np.strings.add(vals.str[:-1].to_numpy().astype(str), alt)
        elif kind == "impossible_date":
            year = df.iloc[rows, col(date_col)].astype(str).str[:4].to_numpy().astype(str)
            df.iloc[rows, col(date_col)] = np.strings.add(year, "-02-30")
        elif kind == "out_of_china":
            df.iloc[rows, col("lon")] = 151.2  # Sydney: well-formed, outside China
            df.iloc[rows, col("lat")] = -33.9
        elif kind == "bad_admin_code":
            df.iloc[rows, col("admin_code")] = "990101"
        sample.defects[kind] = (rows + 1).tolist()


# ---------------------------------------------------------------- files
def write(sample: Sample, out: str | Path, *, fmt: str = "csv", encoding: str = "utf-8") -> Path:
    """Write as CSV (utf-8, utf-8-sig or gbk), Parquet or XLSX; returns the path."""
    path = Path(out)
    if fmt == "csv":
        if encoding not in ("utf-8", "utf-8-sig", "gbk", "gb18030"):
            raise Invalid("encoding must be utf-8, utf-8-sig, gbk or gb18030")
        sample.frame.to_csv(path, index=False, encoding=encoding, lineterminator="\n", chunksize=200_000)
    elif fmt == "parquet":
        sample.frame.to_parquet(path, index=False)
    elif fmt == "xlsx":
        _write_xlsx(sample.frame, path)
    else:
        raise Invalid("format must be csv, parquet or xlsx")
    return path


def _write_xlsx(df: pd.DataFrame, path: Path) -> None:
    from openpyxl import Workbook

    if len(df) > 1_048_575:
        raise Invalid("XLSX holds at most 1,048,575 data rows: use csv or parquet")
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("data")
    ws.append(list(df.columns))
    for row in df.itertuples(index=False, name=None):
        ws.append(list(row))
    wb.save(path)
