"""Masking (脱敏) over pandas Series, vectorised with pyarrow.compute; driven by the vocabulary.

Every function is deterministic, keeps nulls null, and fails closed: a value it cannot parse (an
address with no district, a malformed date or point, a non-email) becomes null rather than leak.
Only keyed pseudonymisation is per value (HMAC cannot be vectorised), and it hashes each distinct
value once.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from common.errors import Invalid
from gmcrypto.sm3 import hmac_sm3
from policies import vocabulary as vocab_mod

STR = pa.large_string()
MASK = pa.scalar("*", STR)
EMPTY = pa.scalar("", STR)
STR_DTYPE = pd.StringDtype("pyarrow", na_value=np.nan)
# Province (optional) · city or prefecture (optional) · the first district/county/county-level city.
# The character classes stop each part at the next administrative suffix, so no part can swallow
# the rest of the address. Only the first ADDRESS_PREFIX characters are examined (by definition), so
# the pattern runs once per distinct prefix; unbounded lazy parts keep RE2 ~5x faster than {m,n}.
ADDRESS_RE = (
    r"^(?P<area>(?:[^省市区县]+?(?:省|自治区))?"
    r"(?:[^省市区县]+?(?:市|自治州|地区|盟))?"
    r"[^省区县市旗]+?(?:区|县|市|旗))"
)
ADDRESS_PREFIX = 32
DATE_RE = (
    r"^\d{4}(?:[-/.年]?)(?:0?[1-9]|1[0-2])(?:[-/.月]?)(?:0?[1-9]|[12]\d|3[01])日?"
    r"(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?\s*$"
)
POINT_RE = r"^\s*(?P<lon>-?\d{1,3}(?:\.\d+)?)\s*,\s*(?P<lat>-?\d{1,2}(?:\.\d+)?)\s*$"
EMAIL_RE = r"^(?P<first>[^@\s])[^@\s]*(?P<domain>@[^@\s]+\.[^@\s]+)$"


def _arrow(s: pd.Series) -> pa.Array:
    """The column as one pyarrow string array (nulls kept)."""
    try:
        arr = pa.array(s.array, from_pandas=True) if len(s) else pa.array([], STR)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        arr = pa.array(s.astype("string").array, from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_floating(arr.type):
        # pandas turns integers with gaps into floats; 13812345678.0 must still read "13812345678".
        finite = pc.drop_null(arr)
        integral = pc.and_(pc.is_finite(finite), pc.equal(pc.floor(finite), finite))
        if len(finite) == 0 or pc.all(integral).as_py():
            arr = pc.cast(arr, pa.int64())
    # One string type throughout (pandas' own), so element-wise kernels never see a mix.
    return arr if arr.type == STR else pc.cast(arr, STR)


def _series(arr: pa.Array | pa.ChunkedArray, like: pd.Series) -> pd.Series:
    """Back to a Series with `like`'s index and name, in pandas' default (Arrow-backed) string dtype."""
    values = pd.arrays.ArrowStringArray(arr if arr.type == STR else pc.cast(arr, STR), dtype=STR_DTYPE)
    return pd.Series(values, index=like.index, name=like.name, copy=False)


def _stars(n: pa.Array) -> pa.Array:
    return pc.binary_repeat(MASK, n)


def partial(s: pd.Series, keep_first: int, keep_last: int) -> pd.Series:
    """Keep the first/last characters, star the rest (`5101**********123X`, `张*`, `138****5678`).

    A value no longer than keep_first + keep_last is starred whole, so short values never show through.
    """
    arr = _arrow(s)
    n = pc.utf8_length(arr)
    keep = keep_first + keep_last
    lengths = pc.unique(n).drop_null().to_pylist()
    if len(lengths) > 16:
        return _series(_partial_general(arr, n, keep_first, keep_last), s)
    # Identifiers come in few lengths: one slice replacement per length beats per-row string building.
    ascii_only = pc.all(pc.string_is_ascii(arr)).as_py() is not False
    replace = pc.binary_replace_slice if ascii_only else pc.utf8_replace_slice
    out = None
    for length in lengths:
        if length > keep:
            cand = replace(arr, keep_first, length - keep_last, "*" * (length - keep))
        else:
            cand = replace(arr, 0, length, "*" * length)
        out = cand if out is None else pc.if_else(pc.equal(n, length), cand, out)
    return _series(out if out is not None else arr, s)


def _partial_general(arr: pa.Array, n: pa.Array, keep_first: int, keep_last: int) -> pa.Array:
    keep = keep_first + keep_last
    head = pc.utf8_slice_codeunits(arr, 0, keep_first)
    tail = pc.utf8_slice_codeunits(arr, -keep_last) if keep_last else pc.utf8_slice_codeunits(arr, 0, 0)
    mid = _stars(pc.max_element_wise(pc.subtract(n, keep), 0))
    kept = pc.binary_join_element_wise(head, mid, tail, EMPTY)
    return pc.if_else(pc.greater(n, keep), kept, _stars(n))


def suppress(s: pd.Series) -> pd.Series:
    """Every value becomes null."""
    return _series(pa.nulls(len(s), STR), s)


def _extract(arr: pa.Array, pattern: str) -> dict[str, pa.Array]:
    """Named groups of `pattern`; a value that does not match gives null in every group."""
    st = pc.extract_regex(arr, pattern)
    # flatten() applies the struct's own validity to its children; .field() would not.
    return dict(zip([f.name for f in st.type], st.flatten(), strict=True))


def generalise_address(s: pd.Series) -> pd.Series:
    """Cut an address after its first district or county: 四川省成都市武侯区人民南路 -> 四川省成都市武侯区."""
    arr = _arrow(s)
    # Regex extraction costs ~0.5 µs a row and addresses repeat their first characters: extract over
    # the distinct prefixes once and map back.
    longest = pc.max(pc.utf8_length(arr)).as_py() or 0
    head = pc.dictionary_encode(arr if longest <= ADDRESS_PREFIX else pc.utf8_slice_codeunits(arr, 0, ADDRESS_PREFIX))
    return _series(pc.take(_extract(head.dictionary, ADDRESS_RE)["area"], head.indices), s)


def year(s: pd.Series) -> pd.Series:
    """A date or date-like string -> its four-digit year; anything else -> null."""
    try:
        raw = pa.array(s.array, from_pandas=True) if len(s) else pa.array([], STR)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        raw = None
    if raw is not None and (pa.types.is_date(raw.type) or pa.types.is_timestamp(raw.type)):
        return _series(pc.cast(pc.year(raw), STR), s)
    arr = _arrow(s)
    valid = pc.match_substring_regex(arr, DATE_RE)
    return _series(pc.if_else(valid, pc.utf8_slice_codeunits(arr, 0, 4), pa.scalar(None, STR)), s)


def grid(s: pd.Series, cell_deg: float) -> pd.Series:
    """`lon,lat` -> the centre of its grid cell of `cell_deg` degrees; malformed or off-globe -> null."""
    pts = _extract(_arrow(s), POINT_RE)
    digits = max(0, len(f"{cell_deg:.10f}".rstrip("0").split(".")[1]) + 1)

    def snap(part: str, limit: float) -> pa.Array:
        v = pc.cast(pts[part], pa.float64())
        ok = pc.less_equal(pc.abs(v), limit)
        centre = pc.add(pc.multiply(pc.floor(pc.divide(v, cell_deg)), cell_deg), cell_deg / 2)
        return pc.if_else(ok, pc.cast(pc.round(centre, digits), STR), pa.scalar(None, STR))

    return _series(pc.binary_join_element_wise(snap("lon", 180.0), snap("lat", 90.0), pa.scalar(",", STR)), s)


def email(s: pd.Series) -> pd.Series:
    """`zhang.san@example.cn` -> `z***@example.cn`; a non-email -> null."""
    parts = _extract(_arrow(s), EMAIL_RE)
    return _series(pc.binary_join_element_wise(parts["first"], pa.scalar("***", STR), parts["domain"], EMPTY), s)


def pseudonym(s: pd.Series, key: bytes, hex_len: int = 16) -> pd.Series:
    """Keyed pseudonym: HMAC-SM3(key, value), hex, truncated; stable per key, unlinkable across keys."""
    if not isinstance(key, bytes | bytearray) or len(key) < 16:
        raise Invalid("a pseudonym key must be at least 16 random bytes, one per grant")
    arr = _arrow(s)
    enc = pc.dictionary_encode(arr)
    uniques = enc.dictionary.to_pylist()
    # HMAC is per value by nature; hashing each distinct value once keeps repeated values cheap.
    hashed = pa.array([hmac_sm3(bytes(key), u.encode("utf-8")).hex()[:hex_len] for u in uniques], STR)
    return _series(pc.take(hashed, enc.indices), s)


def mask_series(
    s: pd.Series,
    tag: str,
    audience: str,
    *,
    pseudonym_key: bytes | None = None,
    vocab: vocab_mod.Vocabulary | None = None,
) -> pd.Series:
    """Mask one column by its tag's rule for `audience`."""
    v = vocab or vocab_mod.default()
    m = vocab_mod.masking_for(tag, audience, v)
    if m.method == "none":
        return s
    if m.method == "suppress":
        return suppress(s)
    if m.method == "partial":
        return partial(s, m.keep_first or 0, m.keep_last or 0)
    if m.method == "generalise_address":
        return generalise_address(s)
    if m.method == "year":
        return year(s)
    if m.method == "grid":
        return grid(s, m.cell_deg or 0.01)
    if m.method == "email":
        return email(s)
    if m.method == "pseudonym":
        if pseudonym_key is None:
            raise Invalid(f"column {s.name!r} (tag {tag}) is pseudonymised for {audience}: pass the grant's key")
        return pseudonym(s, pseudonym_key, v.pseudonym_hex)
    raise Invalid(f"unknown masking method {m.method!r}")  # unreachable: the model restricts methods


def mask_frame(
    df: pd.DataFrame,
    fields: Mapping[str, str],
    audience: str,
    pseudonym_key: bytes | None = None,
    *,
    vocab: vocab_mod.Vocabulary | None = None,
) -> pd.DataFrame:
    """A new frame with every column masked for `audience`; `fields` maps column -> tag.

    Fails closed: a column with no tag is refused (Invalid) rather than passed through raw.
    """
    v = vocab or vocab_mod.default()
    untagged = [c for c in df.columns if c not in fields]
    if untagged:
        raise Invalid(f"columns without a field tag cannot be masked: {', '.join(map(str, untagged))}")
    return pd.DataFrame(
        {c: mask_series(df[c], fields[c], audience, pseudonym_key=pseudonym_key, vocab=v) for c in df.columns},
        index=df.index,
    )
