"""Fixtures for the catalog library tests: independent reference checkers and a tag-check table."""

from __future__ import annotations

import pytest

ID_W = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"

# The tag -> checks table the policies layer hands to run_quality (same vocabulary, written by hand here).
TAG_CHECKS = {
    "id_number": [{"check": "gb11643"}, {"check": "unique"}],
    "usc_code": [{"check": "gb32100", "severity": "warn"}],
    "phone": [{"check": "phone_cn"}],
    "admin_code": [{"check": "admin_division"}],
    "birth_date": [{"check": "date_valid", "not_future": True}],
    "date": [{"check": "date_valid"}],
    "geo_point": [{"check": "coord_china"}],
}


def ref_id_check(first17: str) -> str:
    """GB 11643 check char, written independently of catalog.validators (plain Python loop)."""
    return "10X98765432"[sum(int(c) * w for c, w in zip(first17, ID_W, strict=True)) % 11]


def ref_uscc_check(first17: str) -> str:
    """GB 32100 check char, independently: weights 3^i mod 31."""
    total = sum(USCC_CHARS.index(c) * (3**i % 31) for i, c in enumerate(first17))
    return USCC_CHARS[(31 - total % 31) % 31]


@pytest.fixture
def tag_checks() -> dict:
    return {k: [dict(c) for c in v] for k, v in TAG_CHECKS.items()}
