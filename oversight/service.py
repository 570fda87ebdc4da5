"""Auditor-facing operations on the audit log, each decided by the policies and recorded."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session

from audit import alerts, checkpoints, export, search
from audit.models import Alert, AuditRecord, Checkpoint
from common.actor import Actor
from common.errors import NotFound
from policies import resources, vocabulary
from policies.guard import authorized


def _log() -> Any:
    return resources.audit_log()


def search_events(session: Session, *, actor: Actor, query: search.AuditQuery) -> search.Page:
    """Records matching `query`, newest first, one keyset page."""
    with authorized(session, actor, "audit:search", _log(), resource_type="audit_log", resource_id="search") as act:
        page = search.search(session, query)
        act.outcome["rows"] = len(page.items)
        return page


def event(session: Session, *, actor: Actor, seq: int) -> tuple[AuditRecord, dict[str, Any] | None]:
    """One record and, when a checkpoint covers it, its inclusion proof."""
    with authorized(session, actor, "audit:search", _log(), resource_type="audit_record", resource_id=str(seq)):
        rec = session.get(AuditRecord, seq)
        if rec is None:
            raise NotFound(f"no audit record {seq}")
        cp = checkpoints.latest(session)
        proof = checkpoints.inclusion_proof(session, seq).to_json() if cp and cp.tree_size >= seq else None
        return rec, proof


def aggregates(session: Session, *, actor: Actor, query: search.AuditQuery) -> dict[str, Any]:
    """Accesses per dataset, per organisation and per day (Asia/Shanghai)."""
    with authorized(session, actor, "audit:search", _log(), resource_type="audit_log", resource_id="aggregates"):
        return {
            "per_dataset": search.per_dataset(session, query),
            "per_org": search.per_org(session, query),
            "per_day": {d.isoformat(): n for d, n in search.per_day(session, query).items()},
            "per_action": search.count_by(session, "action", query),
        }


def export_log(
    session: Session, *, actor: Actor, out: Path, first_seq: int = 1, last_seq: int | None = None
) -> export.ExportSummary:
    """Write the log (up to the latest checkpoint) with checkpoints and proof material to `out`."""
    with authorized(session, actor, "audit:export", _log(), resource_type="audit_log", resource_id="export") as act:
        summary = export.export(session, out, first_seq=first_seq, last_seq=last_seq)
        act.outcome.update({"first_seq": first_seq, "records": getattr(summary, "records", None)})
        return summary


def sign_now(session: Session, *, actor: Actor, keyring: Any) -> Checkpoint:
    """Sign a checkpoint on demand."""
    with authorized(
        session, actor, "audit:checkpoint", _log(), resource_type="audit_log", resource_id="checkpoint"
    ) as act:
        cp = checkpoints.sign_checkpoint(session, keyring)
        act.outcome.update({"tree_size": cp.tree_size, "root": cp.root_hash})
        return cp


def list_checkpoints(session: Session, *, actor: Actor, limit: int = 100) -> list[Checkpoint]:
    from sqlmodel import col, select

    with authorized(session, actor, "audit:search", _log(), resource_type="audit_log", resource_id="checkpoints"):
        return list(session.exec(select(Checkpoint).order_by(col(Checkpoint.id).desc()).limit(limit)).all())


def consistency(session: Session, *, actor: Actor, old_size: int, new_size: int) -> dict[str, Any]:
    with authorized(session, actor, "audit:search", _log(), resource_type="audit_log", resource_id="consistency"):
        return checkpoints.consistency_proof(session, old_size, new_size).to_json()


def list_alerts(
    session: Session,
    *,
    actor: Actor,
    since: datetime | None = None,
    rule: str | None = None,
    limit: int = 100,
) -> list[Alert]:
    with authorized(session, actor, "alert:read", _log(), resource_type="audit_log", resource_id="alerts") as act:
        found = alerts.list_alerts(session, since=since, rule=rule, limit=limit)
        act.outcome["rows"] = len(found)
        return found


def alert_rules() -> alerts.AlertRules:
    """The policies' alert thresholds in the audit layer's terms."""
    a = vocabulary.default().alerts
    return alerts.AlertRules(
        # No per-organisation baseline is kept yet: the spike threshold is min_events × factor per hour.
        volume_per_org_per_hour=int(a.volume_spike.min_events * a.volume_spike.factor),
        denials_per_principal=a.repeated_denials.count,
        denial_window_minutes=a.repeated_denials.window_minutes,
        off_hours_start=time(a.off_hours.start_hour),
        off_hours_end=time(a.off_hours.end_hour),
        off_hours_min_grade=f"G{a.off_hours.min_grade}",
    )


def housekeeping(
    uow: Callable[..., AbstractContextManager[Session]],
    *,
    keyring: Any,
    interval: timedelta,
    since: datetime,
    after_seq: int = 0,
) -> dict[str, Any]:
    """The timer's work: sign a checkpoint when due, raise new risk alerts. Run by the gateway itself.

    `uow(read=True)` opens a read transaction, `uow()` a write one. The log is scanned for alerts in the
    read transaction; the write transaction (which holds the append lock) only signs and raises, so
    audited requests never wait for the scan. Returns what it did and `seen`, the last seq it read:
    pass it back as `after_seq` next time.
    """
    with uow(read=True) as s:
        found, seen = alerts.find_alerts(s, since, alert_rules(), after_seq=after_seq)
    with uow() as s:
        cp = checkpoints.checkpoint_if_due(s, keyring, interval=interval)
        new = alerts.raise_alerts(s, found)
    return {"checkpoint": cp.tree_size if cp else None, "alerts": len(new), "seen": seen}


def verify_upload(session: Session, *, actor: Actor, path: Path, public_keys: Any) -> Any:
    """Verify an export someone uploaded, against the gateway's public keys; the result names the first bad record."""
    from audit.verify import verify_export

    with authorized(session, actor, "audit:search", _log(), resource_type="audit_log", resource_id="verify") as act:
        result = verify_export(path, public_keys)
        act.outcome.update({"ok": result.ok, "first_bad_seq": result.first_bad_seq})
        return result
