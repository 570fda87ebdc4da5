"""The experiment report: decisions per role and dataset under each policy set, time to data, quality,
masking, output control, the what-if differences, and a proof bundle an auditor verifies offline."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from audit import checkpoints
from audit.models import AuditRecord
from catalog import service as catalog
from common.actor import Actor
from datarange.isolation import Pass
from oversight import service as oversight
from policies import vocabulary
from sandbox import grants

AUDIENCES = ("public", "share", "sandbox")


def experiment_records(session: Session, run_id: str) -> list[AuditRecord]:
    stmt = select(AuditRecord).where(AuditRecord.experiment == run_id).order_by(col(AuditRecord.seq))
    return list(session.exec(stmt))


def decisions(records: list[AuditRecord], passes: dict[str, Pass]) -> dict[str, Any]:
    """Allowed/denied per pass, per role and per dataset, straight from the audit records."""
    out: dict[str, Any] = {}
    for name, p in passes.items():
        mine = [r for r in records if _in_pass(r, p)]
        by_role: dict[str, Counter[str]] = {}
        by_ds: dict[str, Counter[str]] = {}
        for r in mine:
            key = "allowed" if r.allowed else "denied"
            by_role.setdefault(r.role, Counter())[key] += 1
            if r.dataset:
                by_ds.setdefault(p.local(r.dataset) or "-", Counter())[key] += 1
        out[name] = {
            "scenario": p.scenario,
            "records": len(mine),
            "allowed": sum(r.allowed for r in mine),
            "denied": sum(not r.allowed for r in mine),
            "by_role": {k: dict(v) for k, v in sorted(by_role.items())},
            "by_dataset": {k: dict(v) for k, v in sorted(by_ds.items())},
        }
    return out


def _in_pass(r: AuditRecord, p: Pass) -> bool:
    """A record belongs to a pass by the range's org or dataset codes (setup by the system has no org)."""
    if r.org and r.org.startswith(p.prefix):
        return True
    if r.dataset and r.dataset in p.codes.values():
        return True
    return bool(r.resource_id and (r.resource_id.startswith(p.prefix) or r.resource_id in p.codes.values()))


def time_to_data(p: Pass) -> dict[str, Any]:
    """Per requester: seconds (and tasks) from its first request to its first data result."""
    out: dict[str, Any] = {}
    first: dict[str, tuple[int, str]] = {}
    for i, r in enumerate(p.results):
        if r["kind"] in ("request", "emergency_read") and r["as"] not in first:
            first[r["as"]] = (i, r["started_at"])
        if r.get("result") and r["outcome"] == "allowed" and r["as"] in first and r["as"] not in out:
            i0, t0 = first[r["as"]]
            secs = (datetime.fromisoformat(r["finished_at"]) - datetime.fromisoformat(t0)).total_seconds()
            out[r["as"]] = {"seconds": round(secs, 3), "tasks": i - i0 + 1, "via": r["kind"]}
    for who in first:
        out.setdefault(who, {"seconds": None, "tasks": None, "via": None})  # never got data
    return out


def quality_and_masking(session: Session, p: Pass) -> tuple[dict[str, Any], dict[str, Any]]:
    quality, masks = {}, {}
    vocab = vocabulary.default()
    for name, code in p.codes.items():
        ds = catalog.get(session, code)
        v = catalog.version(session, ds, ds.current_version) if ds.current_version else None
        q = (v.quality or {}) if v is not None else {}
        quality[name] = {
            "library": ds.category,
            "grade": ds.grade,
            "version": ds.current_version,
            "rows": v.rows if v is not None else None,
            "quality_score": v.quality_score if v is not None else None,
            "failed_checks": sum(1 for c in q.get("checks", []) if not c.get("success", True)),
        }
        masks[name] = {
            col_: {aud: vocabulary.masking_for(tag, aud, vocab).method for aud in AUDIENCES} | {"tag": tag}
            for col_, tag in grants.fields_of(ds).items()
            if any(vocabulary.masking_for(tag, a, vocab).method != "none" for a in AUDIENCES)
        }
    return quality, masks


def proof_bundle(uow: Any, run_id: str, *, keyring: Any, out_dir: Path) -> dict[str, Any]:
    """Sign a checkpoint over the experiment's records; inclusion proofs for each; an export for `pdg audit verify`."""
    system = Actor.system(f"datarange:{run_id}:proof")
    with uow() as s:
        cp = oversight.sign_now(s, actor=system, keyring=keyring)
    with uow() as s:
        seqs = [r.seq for r in experiment_records(s, run_id)]
        proofs = [checkpoints.inclusion_proof(s, q, cp.tree_size).to_json() for q in seqs if q <= cp.tree_size]
    export_path = out_dir / "audit-export.zip"
    if seqs:
        with uow() as s:
            oversight.export_log(s, actor=system, out=export_path, first_seq=seqs[0], last_seq=cp.tree_size)
    pem = out_dir / "gateway-public.pem"
    pem.write_text("".join(k.to_pem().decode() for k in keyring.public_keys.values()))
    return {
        "checkpoint": {
            "id": cp.id,
            "tree_size": cp.tree_size,
            "root_hash": cp.root_hash,
            "key_id": cp.key_id,
            "time": cp.time.isoformat(),
            "signature": cp.signature,
            "signed_text": checkpoints.checkpoint_text(cp),
        },
        "records": seqs,
        "inclusion_proofs": proofs,
        "export": export_path.name if seqs else None,
        "public_key": pem.name,
        "verify": f"pdg audit verify {export_path.name} --public-key {pem.name}",
    }


def write(report: dict[str, Any], out_dir: Path) -> None:
    from datarange.html import render

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=1, default=str))
    (out_dir / "report.html").write_text(render(report), encoding="utf-8")
