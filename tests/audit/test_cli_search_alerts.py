"""The `pdg audit verify` command, the auditor's search and aggregates, and risk alerts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlmodel import Session, select
from typer.testing import CliRunner

import audit
from audit import alerts, search
from audit.export import export
from audit.models import Alert, AuditRecord
from common.actor import Actor
from gateway.commands.audit import app

from .conftest import ALICE, BOB, append, checkpoint


def test_cli_verify_passes_then_names_the_bad_record(audit_engine, keyring, tmp_path: Path) -> None:
    append(audit_engine, 8)
    checkpoint(audit_engine, keyring)
    with Session(audit_engine) as s:
        export(s, tmp_path / "e.zip")
    pem = tmp_path / "gateway.pem"
    pem.write_bytes(keyring.public_key.to_pem())
    runner = CliRunner()
    ok = runner.invoke(app, ["verify", str(tmp_path / "e.zip"), "--public-key", str(pem)])
    assert ok.exit_code == 0 and "8 records" in ok.output
    import zipfile

    with zipfile.ZipFile(tmp_path / "e.zip") as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    bad = tmp_path / "bad"
    bad.mkdir()
    for name, data in members.items():
        (bad / name).write_bytes(data.replace(b'"rows":5', b'"rows":6'))
    res = runner.invoke(app, ["verify", str(bad), "--public-key", str(pem)])
    assert res.exit_code == 1 and "record 6" in res.output
    missing = runner.invoke(app, ["verify", str(bad), "--public-key", str(tmp_path / "nope.pem")])
    assert missing.exit_code == 2


def test_search_filters_and_keyset_pages(audit_engine, fixed_clock) -> None:
    append(audit_engine, 5)
    append(
        audit_engine,
        4,
        actor=BOB,
        action="workspace:query",
        resource_type="query",
        resource_id="q1",
        dataset="legal.persons",
        allowed=False,
        scenario="flood",
        experiment="exp-7",
    )
    append(audit_engine, 3)
    with Session(audit_engine) as s:
        page = search.search(s, search.AuditQuery(principal="ent:alice", limit=5))
        assert [r.seq for r in page.items] == [12, 11, 10, 5, 4] and page.next_before_seq == 4
        page2 = search.search(s, search.AuditQuery(principal="ent:alice", limit=5, before_seq=4))
        assert [r.seq for r in page2.items] == [3, 2, 1] and page2.next_before_seq is None
        assert len(search.search(s, search.AuditQuery(allowed=False, scenario="flood")).items) == 4
        assert len(search.search(s, search.AuditQuery(experiment="exp-7", org="ENT-2")).items) == 4
        assert (
            len(search.search(s, search.AuditQuery(dataset="legal.persons", action="workspace:query")).items)
            == 4
        )
        t5 = s.exec(select(AuditRecord.time).where(AuditRecord.seq == 5)).one()
        t9 = s.exec(select(AuditRecord.time).where(AuditRecord.seq == 9)).one()
        window = search.search(s, search.AuditQuery(since=t5, until=t9))
        assert [r.seq for r in window.items] == [8, 7, 6, 5]
        assert search.per_dataset(s) == {"pop.residents": 8, "legal.persons": 4}
        assert search.per_org(s) == {"ENT-1": 8, "ENT-2": 4}


def test_per_day_counts_in_shanghai_time(audit_engine, fixed_clock) -> None:
    fixed_clock[0] = datetime(2025, 3, 1, 15, 59, 59, tzinfo=UTC)  # 23:59:59 in Shanghai
    append(audit_engine, 1)
    fixed_clock[0] = datetime(2025, 3, 1, 16, 0, 1, tzinfo=UTC)  # 00:00:01 next day in Shanghai
    append(audit_engine, 2)
    with Session(audit_engine) as s:
        assert search.per_day(s) == {date(2025, 3, 1): 1, date(2025, 3, 2): 2}


def test_alert_rules_raise_once_and_are_logged(audit_engine, fixed_clock) -> None:
    start = datetime(2025, 3, 1, 3, 0, tzinfo=UTC)  # 11:00 Shanghai
    fixed_clock[0] = start
    append(audit_engine, 6, actor=BOB, allowed=False)  # repeated denials within seconds
    append(audit_engine, 12)  # volume for ENT-1 in one hour
    append(audit_engine, 1, outcome={"rows": 10, "near_limit": True})
    fixed_clock[0] = datetime(2025, 3, 1, 15, 30, tzinfo=UTC)  # 23:30 Shanghai: off hours
    append(audit_engine, 2, outcome={"rows": 1, "grade": "G3"})
    append(audit_engine, 1, outcome={"rows": 1, "grade": "G2"})
    rules = {"volume_per_org_per_hour": 10, "denials_per_principal": 5, "denial_window_minutes": 10}
    with Session(audit_engine) as s:
        new = alerts.evaluate_alerts(s, start - timedelta(hours=1), rules)
        s.commit()
        by_rule = {a.rule: a for a in new}
        assert set(by_rule) == {
            "repeated_denials",
            "volume_spike",
            "near_output_limit",
            "off_hours_sensitive",
        }
        assert by_rule["repeated_denials"].principal == "ent:bob" and by_rule["repeated_denials"].count == 5
        assert by_rule["volume_spike"].org == "ENT-1" and by_rule["volume_spike"].count == 13
        assert by_rule["off_hours_sensitive"].first_seq == 20  # the first G3 read that night
        logged = s.exec(select(AuditRecord).where(AuditRecord.action == "alert:raise")).all()
        assert sorted(r.seq for r in logged) == sorted(a.audit_seq for a in new)
    with Session(audit_engine) as s:
        assert alerts.evaluate_alerts(s, start - timedelta(hours=1), rules) == []  # idempotent
        assert len(alerts.list_alerts(s)) == 4
        assert len(alerts.list_alerts(s, rule="volume_spike")) == 1


def test_quiet_activity_raises_nothing(audit_engine, fixed_clock) -> None:
    append(audit_engine, 3)
    with Session(audit_engine) as s:
        audit.record(
            s,
            actor=Actor.public(),
            action="dataset:read_open",
            resource_type="dataset",
            resource_id="geo.roads",
            allowed=False,
        )
        s.commit()
        assert alerts.evaluate_alerts(s, datetime(2025, 1, 1, tzinfo=UTC), alerts.AlertRules()) == []
        assert s.exec(select(Alert)).all() == []
    assert ALICE.org == "ENT-1"
