"""The report as one self-contained HTML page: inline CSS and SVG charts, no script, no CDN."""

from __future__ import annotations

import json
from html import escape
from typing import Any

CSS = """body{font:14px/1.5 system-ui,"PingFang SC","Noto Sans CJK SC",sans-serif;margin:2em auto;max-width:1100px;
color:#222}h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;margin-top:2em}table{border-collapse:collapse;
margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}.bad{color:#b00}.ok{color:#070}
code,pre{background:#f5f5f5;padding:1px 4px}pre{padding:8px;overflow:auto;max-height:300px}"""
ALLOW, DENY = "#3a7d44", "#c0392b"


def _e(v: Any) -> str:
    return escape("—" if v is None else str(v))


def _table(head: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def bars(title: str, groups: dict[str, dict[str, int]]) -> str:
    """Stacked horizontal bars, allowed (green) and denied (red), one per group."""
    if not groups:
        return "<p>(no decisions)</p>"
    top = max((g.get("allowed", 0) + g.get("denied", 0)) for g in groups.values()) or 1
    h, label, width = 22, 170, 420
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label + width + 80}" height="{h * len(groups) + 30}" '
        f'role="img" aria-label="{_e(title)}"><title>{_e(title)}</title>'
    ]
    for i, (name, g) in enumerate(groups.items()):
        y = 20 + i * h
        a, d = g.get("allowed", 0), g.get("denied", 0)
        wa, wd = width * a / top, width * d / top
        parts.append(f'<text x="0" y="{y + 14}" font-size="12">{_e(name)[:28]}</text>')
        parts.append(f'<rect x="{label}" y="{y}" width="{wa:.1f}" height="{h - 6}" fill="{ALLOW}"/>')
        parts.append(f'<rect x="{label + wa:.1f}" y="{y}" width="{wd:.1f}" height="{h - 6}" fill="{DENY}"/>')
        parts.append(f'<text x="{label + wa + wd + 6:.1f}" y="{y + 14}" font-size="12">{a} / {d}</text>')
    parts.append(f'<text x="{label}" y="12" font-size="11">allowed / denied</text></svg>')
    return "".join(parts)


def _expected(r: dict[str, Any]) -> str:
    return (r.get("expected") or "") + ("" if r.get("as_expected", True) else " ✗ (missed)")


def render(rep: dict[str, Any]) -> str:
    out = [f"<!doctype html><html lang='zh'><meta charset='utf-8'><title>{_e(rep.get('name'))} · 数据靶场</title>"]
    out.append(f"<style>{CSS}</style><body><h1>数据靶场 · {_e(rep.get('title') or rep.get('name'))}</h1>")
    out.append(
        f"<p>experiment <code>{_e(rep.get('experiment'))}</code> · scenario <code>{_e(rep.get('scenario'))}</code>"
        f" · policy version <code>{_e(str(rep.get('policy_version'))[:16])}</code></p>"
    )
    out.append("<h2>Decisions under each policy set</h2>")
    for name, d in (rep.get("decisions") or {}).items():
        out.append(f"<h3>{_e(name)} ({_e(d.get('scenario') or 'baseline rules')}): {d['allowed']} allowed, "
                   f"{d['denied']} denied of {d['records']} records</h3>")  # fmt: skip
        out.append(bars(f"{name} by role", d["by_role"]) + bars(f"{name} by dataset", d["by_dataset"]))
    out.append("<h2>Tasks whose outcome differed</h2>")
    diffs = rep.get("differences") or []
    out.append(_table(["task", "kind", "as", "dataset", "baseline", "scenario"],
        [[x["task"], x["kind"], x["as"], x["dataset"], f"{x['baseline']} ({x['baseline_status']})",
          f"{x['scenario']} ({x['scenario_status']})"] for x in diffs]) if diffs else "<p>none</p>")  # fmt: skip
    w = rep.get("whatif") or {}
    out.append(f"<h2>What-if replay: {_e(w.get('differences'))} of {_e(w.get('decisions'))} decisions differ</h2>")
    out.append(_table(["pass", "role", "org", "action", "dataset", "purpose", "baseline", "scenario"],
        [[x.get("pass"), x["role"], x["org"], x["action"], x["dataset"], x["purpose"],
          f"{'allow' if x['baseline']['allowed'] else 'deny'} {', '.join(x['baseline']['reasons'])}",
          f"{'allow' if x['scenario']['allowed'] else 'deny'} {', '.join(x['scenario']['reasons'])}"]
         for x in w.get("differs", [])]))  # fmt: skip
    out.append("<h2>Time from request to first result</h2>")
    for name, t in (rep.get("time_to_data") or {}).items():
        out.append(f"<h3>{_e(name)}</h3>" + _table(["requester", "seconds", "tasks", "via"],
            [[k, v["seconds"], v["tasks"], v["via"] or "no data"] for k, v in t.items()]))  # fmt: skip
    out.append("<h2>Datasets: quality</h2>")
    out.append(_table(["dataset", "library", "grade", "version", "rows", "quality score", "failed checks"],
        [[k, v["library"], v["grade"], v["version"], v["rows"], v["quality_score"], v["failed_checks"]]
         for k, v in (rep.get("quality") or {}).items()]))  # fmt: skip
    out.append("<h2>Masking applied (method per audience)</h2>")
    rows = [[ds, c, m["tag"], m["public"], m["share"], m["sandbox"]]
            for ds, cols in (rep.get("masking") or {}).items() for c, m in cols.items()]  # fmt: skip
    out.append(_table(["dataset", "column", "tag", "public", "share", "sandbox"], rows))
    out.append("<h2>Output control</h2>")
    oc = [[p, x["task"], x["decision"], x["status"], "; ".join(x["reasons"])]
          for p, xs in (rep.get("output_control") or {}).items() for x in xs]  # fmt: skip
    out.append(_table(["pass", "task", "decision", "status", "reasons"], oc) if oc else "<p>no queries</p>")
    out.append("<h2>Tasks</h2>")
    for name, rs in (rep.get("tasks") or {}).items():
        cells = [[r["task"], r["kind"], r["as"], r["outcome"], r.get("status"), _expected(r), r["ms"]] for r in rs]
        out.append(
            f"<h3>{_e(name)}</h3>" + _table(["task", "kind", "as", "outcome", "status", "expected", "ms"], cells)
        )
    proof = rep.get("proof") or {}
    cp = proof.get("checkpoint") or {}
    out.append("<h2>Proof bundle</h2>")
    out.append(
        f"<p>{len(proof.get('records') or [])} records of this experiment, each with an inclusion proof against "
        f"checkpoint {_e(cp.get('id'))} (tree size {_e(cp.get('tree_size'))}, root <code>{_e(cp.get('root_hash'))}"
        f"</code>, SM2 key <code>{_e(cp.get('key_id'))}</code>).</p><p>Verify offline: "
        f"<code>{_e(proof.get('verify'))}</code></p><pre>{_e(cp.get('signed_text'))}</pre>"
    )
    out.append(f"<details><summary>records</summary><pre>{_e(json.dumps(proof.get('records')))}</pre></details>")
    out.append("</body></html>")
    return "".join(out)
