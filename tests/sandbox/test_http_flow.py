"""The whole sandbox flow over HTTP, and the package opened by an independent implementation."""

from __future__ import annotations

import csv
import io
import json

from tests.conftest import audit_rows
from tests.sandbox import _world
from tests.sandbox._world import CERT, POP, apply, approve_all

sandbox_runner, world = _world.sandbox_runner, _world.world  # fixtures

AGG = "select gender, count(*) as n from population group by gender"


def test_apply_approve_query_export_download(world):
    w = world
    req = apply(w, {POP: ["gender", "household_address_code", "birth_date"]})
    assert req["state"] == "submitted" and req["owners"] == ["510100-GA"]
    grant_id = approve_all(w, req)

    ws = w.get(w.ent, f"/workspaces/{grant_id}")
    assert ws.status_code == 200, ws.text
    table = ws.json()["tables"][0]
    assert table["table"] == "population" and {c["name"] for c in table["columns"]} == {
        "gender",
        "household_address_code",
        "birth_date",
    }
    assert len(table["preview"]) == 10 and all(
        len(r["birth_date"]) == 4 for r in table["preview"]
    )  # year only

    r = w.post(w.ent, f"/workspaces/{grant_id}/queries", {"sql": AGG})
    assert r.status_code == 201, r.text
    q = r.json()
    assert q["decision"] == "released", q
    assert sorted(row[0] for row in q["result"]["rows"]) == ["女", "男"]
    assert q["rows_scanned"] == 300

    e = w.post(w.ent, f"/queries/{q['id']}/export", {"format": "csv"})
    assert e.status_code == 201, e.text
    assert e.json()["state"] == "released"  # two rows: below the review threshold
    pkg = w.client.get(f"/api/v1/sandbox/exports/{e.json()['id']}", headers=w.ent.headers)
    assert pkg.status_code == 200 and pkg.content[:6] == b"PDGPKG"
    print(json.dumps(q)[:200], len(pkg.content))
