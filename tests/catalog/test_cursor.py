"""Keyset cursors: round trip, and every kind of forged, truncated or misapplied cursor refused."""

from __future__ import annotations

import base64
import json

import pytest

from catalog.cursor import MAX_CURSOR_CHARS, decode_cursor, encode_cursor
from common.errors import BadRequest

KEY = b"k" * 32
VALUES = ["2010-12-30", 42, 1.5, None, "王小明"]


def _enc(**kw):
    args = {"version": "population/3", "shape": "shape-a", "values": VALUES} | kw
    return encode_cursor(KEY, **args)


def _dec(token, **kw):
    args = {"version": "population/3", "shape": "shape-a", "arity": len(VALUES)} | kw
    return decode_cursor(KEY, token, **args)


def test_round_trip_keeps_values_and_types():
    assert _dec(_enc()) == VALUES


def test_cursor_is_url_safe():
    token = _enc()
    assert all(c.isalnum() or c in "-_." for c in token)


def test_other_version_is_refused_with_reason():
    with pytest.raises(BadRequest, match="another version"):
        _dec(_enc(), version="population/4")


def test_other_query_shape_is_refused_with_reason():
    with pytest.raises(BadRequest, match="different filters or sort"):
        _dec(_enc(), shape="shape-b")


def test_other_key_is_refused():
    with pytest.raises(BadRequest, match="invalid or was altered"):
        decode_cursor(b"x" * 32, _enc(), version="population/3", shape="shape-a", arity=len(VALUES))


@pytest.mark.parametrize("pos", [0, 5, 20, -25, -3, -1])
def test_any_flipped_character_is_refused(pos):
    token = _enc()
    i = pos % len(token)
    if token[i] == ".":
        i += 1
    flipped = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
    with pytest.raises(BadRequest):
        _dec(flipped)


def test_edited_values_with_kept_fingerprints_are_refused():
    head, tail = _enc().split(".")
    body = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    body["k"][1] = 0  # jump elsewhere in the table
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    with pytest.raises(BadRequest, match="invalid or was altered"):
        _dec(forged + "." + tail)


@pytest.mark.parametrize(
    "token",
    ["", "abc", "abc.", ".abc", "%%%.%%%", "eyJrIjpbXX0.AAAA", "x" * (MAX_CURSOR_CHARS + 1), "中文.中文"],
)
def test_malformed_cursors_are_refused(token):
    with pytest.raises(BadRequest):
        _dec(token)


def test_truncated_cursor_is_refused():
    token = _enc()
    with pytest.raises(BadRequest):
        _dec(token[:-4])


def test_arity_mismatch_is_refused():
    with pytest.raises(BadRequest, match="does not fit"):
        _dec(_enc(), arity=2)


def test_short_server_key_is_a_programming_error():
    with pytest.raises(ValueError):
        encode_cursor(b"short", version="v", shape="s", values=[1])
