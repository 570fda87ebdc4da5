"""Sharing between departments by share type: unconditional at once, conditional through the owner's
approval, closed refused; shared data is read masked for the `share` audience."""

from __future__ import annotations

from tests.conftest import audit_rows
from tests.sandbox import _world
from tests.sandbox._world import CLOSED, GEO, POP

sandbox_runner, world = _world.sandbox_runner, _world.world  # fixtures


def _share(w, who, code, columns):
    return w.post(
        who,
        "/shares",
        {
            "dataset": code,
            "columns": columns,
            "purpose": "service_planning",
            "purpose_text": "公共服务设施规划",
            "duration_days": 30,
        },
    )


def test_unconditional_share_is_granted_at_once_and_closed_is_refused(world):
    w = world
    r = _share(w, w.other, GEO, ["poi_id", "category", "lon", "lat"])
    assert r.status_code == 201, r.text
    req = r.json()
    assert req["state"] == "active" and req["grant_id"] and req["decisions"][0]["role"] == "policy"
    rows = w.get(w.other, f"/shares/{req['grant_id']}/rows", limit=5, offset=10)
    assert rows.status_code == 200
    page = rows.json()
    assert page["columns"] == ["poi_id", "category", "lon", "lat"] and len(page["rows"]) == 5
    assert page["total"] == 100 and page["offset"] == 10
    # Another department cannot read through this grant; the owner does not need one.
    assert w.get(w.ga, f"/shares/{req['grant_id']}/rows").status_code == 403
    assert _share(w, w.gh, GEO, ["poi_id"]).status_code == 422  # own dataset
    closed = _share(w, w.other, CLOSED, ["gender"])
    assert closed.status_code == 403
    assert "hard.closed_not_shared" in audit_rows(w.state.engine, action="request:create")[-1].reasons
    reads = [x for x in audit_rows(w.state.engine, action="dataset:read_shared") if x.allowed]
    assert reads[0].outcome["immediate"] is True and reads[1].outcome["rows"] == 5
    # Revoked by the owner: reading stops at once.
    assert w.post(w.gh, f"/grants/{req['grant_id']}/revoke", {"reason": "planning done"}).status_code == 200
    assert w.get(w.other, f"/shares/{req['grant_id']}/rows").status_code == 409


def test_conditional_share_goes_through_the_owner_only(world):
    w = world
    r = _share(w, w.other, POP, ["person_id", "name", "gender"])
    assert r.status_code == 201 and r.json()["state"] == "submitted"
    req = r.json()
    assert w.get(w.ga, "/requests", scope="to_decide").json()[0]["id"] == req["id"]
    # The operator co-decides only enterprise sandbox requests.
    assert w.post(w.operator, f"/requests/{req['id']}/decision", {"decision": "approve"}).status_code == 403
    assert w.get(w.other, f"/shares/{req['id']}/rows").status_code == 404  # no grant yet
    done = w.post(w.ga, f"/requests/{req['id']}/decision", {"decision": "approve"}).json()
    assert done["state"] == "active"
    page = w.get(w.other, f"/shares/{done['grant_id']}/rows", limit=3).json()
    assert page["columns"] == ["person_id", "name", "gender"] and len(page["rows"]) == 3
    assert all(len(row["person_id"]) == 18 for row in page["rows"])  # share masking keeps ids for government use
    # A sandbox grant is not a share grant, and a share grant is not a workspace.
    assert w.get(w.other, f"/workspaces/{done['grant_id']}").status_code == 403
