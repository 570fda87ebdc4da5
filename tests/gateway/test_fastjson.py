"""Row pages are encoded directly; the body is what FastAPI's own serialisation gives for the same values."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.fastjson import json_response

PAGE = {
    "data": [
        {"a": float("inf"), "b": float("nan"), "c": 1.5, "d": "西", "n": None},
        {"a": float("-inf"), "b": 2, "c": dt.date(2020, 1, 2), "d": dt.datetime(2020, 1, 2, 3, 4, 5), "n": [1, 2]},
        {"a": decimal.Decimal("3"), "b": decimal.Decimal("2.5"), "c": b"raw", "d": (1, float("inf")), "n": True},
    ],
    "meta": {"total": 3},
}


def test_same_body_as_fastapi_including_non_finite_floats():
    app = FastAPI()

    @app.get("/fastapi")
    def plain() -> dict[str, Any]:
        return PAGE

    @app.get("/direct")
    def direct() -> Any:
        return json_response(PAGE)

    with TestClient(app) as c:
        want, got = c.get("/fastapi"), c.get("/direct")
    assert got.status_code == 200 and got.headers["content-type"] == "application/json"
    assert json.loads(got.content) == json.loads(want.content)
    assert json.loads(got.content)["data"][0]["a"] is None  # not a 500, not an invalid `Infinity` token


def test_values_the_fast_encoder_refuses_still_encode():
    """An integer beyond 64 bits, and int keys, come out as the standard library writes them."""
    big = {"data": [{"n": 2**70, "m": -(2**65)}], "meta": {1: "one"}}
    body = json_response(big).body
    assert json.loads(body) == {"data": [{"n": 2**70, "m": -(2**65)}], "meta": {"1": "one"}}
