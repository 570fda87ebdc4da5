"""Sample libraries: deterministic, valid by independent checks, with exactly the defects recorded."""

from __future__ import annotations

import pandas as pd
import pytest

from catalog import samples
from catalog.fields import Schema
from common.errors import Invalid
from tests.catalog.conftest import ref_id_check, ref_uscc_check


def test_same_seed_same_rows_other_seed_other_rows() -> None:
    a = samples.generate("population", 500, seed=11)
    b = samples.generate("population", 500, seed=11)
    c = samples.generate("population", 500, seed=12)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert not a.frame["person_id"].equals(c.frame["person_id"])


def test_population_ids_are_valid_unique_and_consistent_with_gender_and_birth_date() -> None:
    df = samples.generate("population", 3000, seed=5).frame
    ids = df["person_id"].tolist()
    assert all(i[17] == ref_id_check(i[:17]) for i in ids)
    assert df["person_id"].is_unique
    assert all(i[6:14] == b.replace("-", "") for i, b in zip(ids, df["birth_date"], strict=True))
    assert all((int(i[16]) % 2 == 1) == (g == "男") for i, g in zip(ids, df["gender"], strict=True))
    assert df["household_address_code"].str.match(r"^51(01|17)\d\d$").all()
    assert df["household_address"].str.startswith("四川省").all()
    assert df["phone"].str.fullmatch(r"1[3-9]\d{9}").all()


def test_legal_persons_and_certificates_link_by_valid_uscc() -> None:
    lp = samples.generate("legal_person", 800, seed=9).frame
    assert all(c[17] == ref_uscc_check(c[:17]) for c in lp["uscc"])
    assert lp["uscc"].is_unique
    certs = samples.generate("certificate", 1200, seed=9, legal_person_rows=800).frame
    assert set(certs["holder_uscc"]) <= set(lp["uscc"])
    assert (certs["cert_type"] == "营业执照").sum() == 800  # one business licence per legal person
    assert (pd.to_datetime(certs["expiry_date"]) > pd.to_datetime(certs["issue_date"])).all()
    assert certs["cert_no"].is_unique


def test_geospatial_points_lie_in_sichuan() -> None:
    df = samples.generate("geospatial", 1000, seed=2).frame
    assert df["lon"].between(97, 109).all() and df["lat"].between(26, 35).all()
    assert df["poi_id"].is_unique


@pytest.mark.parametrize("library", samples.LIBRARIES)
def test_defects_are_exact_and_recorded_by_row(library: str) -> None:
    clean = samples.generate(library, 1000, seed=4).frame
    s = samples.generate(library, 1000, seed=4, defects=0.02)
    assert set(s.defects) == set(samples.DEFECT_KINDS[library])
    rows = [r for v in s.defects.values() for r in v]
    assert all(len(v) == 20 for v in s.defects.values()) and len(set(rows)) == 60
    changed = (clean.astype(str) != s.frame.astype(str)).any(axis=1)
    assert sorted((changed[changed].index + 1).tolist()) == sorted(rows)
    key = s.schema.key
    assert s.frame[key].duplicated(keep=False).sum() == 40  # each duplicate and the row it copies


def test_schemas_and_registrations() -> None:
    for lib in samples.LIBRARIES:
        schema = samples.schema_for(lib)
        assert isinstance(schema, Schema) and schema.key in schema.names
        assert list(samples.generate(lib, 5).frame.columns) == schema.names
        reg = samples.registration_for(lib)
        assert reg["code"].startswith("510100-") and reg["title"] and reg["schema"]["fields"]
    opens = {lib: samples.registration_for(lib)["open_type"] for lib in samples.LIBRARIES}
    assert opens == {
        "population": "conditional",
        "legal_person": "unconditional",
        "geospatial": "unconditional",
        "certificate": "conditional",
    }
    assert samples.schema_for("geospatial").geo_pairs() == [("lon", "lat")]


def test_bad_arguments_are_invalid() -> None:
    with pytest.raises(Invalid, match="unknown library"):
        samples.generate("weather", 10)
    with pytest.raises(Invalid, match="rows"):
        samples.generate("population", 0)
    with pytest.raises(Invalid, match="defects"):
        samples.generate("population", 10, defects=0.9)


def test_gbk_csv_round_trips(tmp_path) -> None:
    s = samples.generate("population", 50, seed=1)
    path = samples.write(s, tmp_path / "p.csv", encoding="gbk")
    back = pd.read_csv(path, encoding="gbk", dtype=str)
    assert back["name"].tolist() == s.frame["name"].tolist()
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")
