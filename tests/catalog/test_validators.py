"""The vectorised validators agree with independent per-value reference implementations."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pandas as pd
import pytest

from catalog import validators as v
from common import clock
from tests.catalog.conftest import USCC_CHARS, ref_id_check, ref_uscc_check


def _ids(n: int, seed: int = 7) -> list[str]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        body = f"5101{rnd.randint(1, 99):02d}{rnd.randint(1940, 2010)}"
        body += f"{rnd.randint(1, 12):02d}{rnd.randint(1, 28):02d}{rnd.randint(0, 999):03d}"
        out.append(body + ref_id_check(body))
    return out


def test_gb11643_published_example_and_random_ids() -> None:
    ids = ["11010519491231002X", *_ids(300)]
    assert v.gb11643(pd.Series(ids)).all()
    wrong = [i[:17] + ("0" if i[17] != "0" else "1") for i in ids]
    assert not v.gb11643(pd.Series(wrong)).any()


def test_gb11643_rejects_bad_shape_and_impossible_birth_dates_and_accepts_lowercase_x() -> None:
    feb30 = "51010719900230001"
    future = "51010720990101001"
    values = [
        "11010519491231002x",
        "1101051949123100",
        "ABCDEFGHIJKLMNOPQR",
        feb30 + ref_id_check(feb30),
        future + ref_id_check(future),
        None,
    ]
    assert v.gb11643(pd.Series(values)).tolist() == [True, False, False, False, False, True]


def test_gb11643_birth_date_is_compared_with_the_injected_clock() -> None:
    body = "51010720300101001"
    s = pd.Series([body + ref_id_check(body)])
    clock.set_clock(lambda: datetime(2031, 1, 1, tzinfo=UTC))
    try:
        assert v.gb11643(s).tolist() == [True]
    finally:
        clock.set_clock(None)
    assert v.gb11643(s).tolist() == [False]


def test_gb32100_matches_reference_on_random_codes() -> None:
    rnd = random.Random(3)
    codes = ["91350100M000100Y43"]
    for _ in range(300):
        body = "91510107" + "".join(rnd.choice(USCC_CHARS) for _ in range(9))
        codes.append(body + ref_uscc_check(body))
    assert v.gb32100(pd.Series(codes)).all()
    bad = [c[:17] + USCC_CHARS[(USCC_CHARS.index(c[17]) + 1) % 31] for c in codes]
    assert not v.gb32100(pd.Series(bad)).any()
    # letters outside the alphabet (I, O, S, V, Z) and wrong length fail
    assert v.gb32100(pd.Series(["91350100M000100I43", "91350100M000100Y4", None])).tolist() == [
        False,
        False,
        True,
    ]


def test_phone_admin_email_luhn_coords() -> None:
    phones = [
        "13812345678",
        "+86 13812345678",
        "028-85551234",
        "02885551234",
        "12812345678",
        "1381234567",
        None,
    ]
    assert v.phone_cn(pd.Series(phones)).tolist() == [True, True, True, True, False, False, True]
    assert v.admin_division(pd.Series(["510107", "110000", "990101", "51010", None])).tolist() == [
        True,
        True,
        False,
        False,
        True,
    ]
    assert v.email(pd.Series(["a.b@example.cn", "no-at.example.cn", "x@y"])).tolist() == [True, False, False]
    cards = pd.Series(["4111111111111111", "4111111111111112", "5500005555555559"])
    assert v.bank_card_luhn(cards).tolist() == [
        True,
        False,
        True,
    ]
    lon, lat = pd.Series([104.06, 151.2, None, 73.4]), pd.Series([30.67, -33.9, None, 40.0])
    assert v.coord_china(lon, lat).tolist() == [True, False, True, False]


def test_dates_unique_not_null() -> None:
    dates = pd.Series(["2024-02-29", "2023-02-29", "2024/12/31", "20240101", "2024-13-01", "tomorrow", None])
    assert v.date_valid(dates).tolist() == [True, False, True, True, False, False, True]
    typed = pd.to_datetime(pd.Series(["2024-02-29", None]))
    assert v.date_valid(typed).tolist() == [True, True]
    assert v.date_valid(pd.Series(["2090-01-01"]), not_future=True).tolist() == [False]
    assert v.unique(pd.Series(["a", "b", "a", None, None])).tolist() == [False, True, False, True, True]
    assert v.not_null(pd.Series(["a", "  ", None])).tolist() == [True, False, False]


def test_checks_keep_the_callers_index() -> None:
    s = pd.Series(["11010519491231002X", "bad"], index=[10, 10])
    assert v.gb11643(s).tolist() == [True, False]
    with pytest.raises(KeyError):
        v.run_check("no_such_check", s)
