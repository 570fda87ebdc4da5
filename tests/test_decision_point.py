"""Every service entry point asks the decision point (after CKAN's check that each action called its auth).

A public function in a service module that takes an `actor` is an entry point (HTTP, CLI and jobs call
it). It must reach — directly or through functions it calls — one of the guard's calls. This is a
static check over the source, so a new service function that forgets to ask fails here before review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICE_PACKAGES = ("identity", "catalog", "sandbox", "oversight", "datarange")
GUARD_CALLS = {"authorized", "allow_or_raise", "decide", "decide_many", "require", "authorize"}
# Modules that hold no entry points (pure libraries below the services).
LIBRARIES = {"catalog/reader.py", "catalog/streaming.py", "catalog/cursor.py", "catalog/validators.py",
             "catalog/samples.py", "catalog/fields.py", "catalog/storage.py", "catalog/dcat.py",
             "sandbox/sqlguard.py", "sandbox/runner.py", "sandbox/worker.py", "sandbox/output_control.py",
             "sandbox/budget.py"}


# Entry points that record the effect of a decision already made and recorded (never a decision of their own).
EFFECT_RECORDERS = {("sandbox/grants.py", "record_effect")}


def _modules() -> list[Path]:
    out = []
    for pkg in SERVICE_PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel not in LIBRARIES and "/ingest/" not in rel and "/quality/" not in rel:
                out.append(path)
    return out


def _called_names(fn: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name):
                names.add(f.id)
            elif isinstance(f, ast.Attribute):
                names.add(f.attr)
    return names


def _functions() -> dict[str, list[tuple[str, ast.FunctionDef]]]:
    found: dict[str, list[tuple[str, ast.FunctionDef]]] = {}
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                found.setdefault(node.name, []).append((path.relative_to(ROOT).as_posix(), node))
    return found


def _asks(name: str, funcs: dict, seen: set[str]) -> bool:
    if name in GUARD_CALLS:
        return True
    if name in seen or name not in funcs:
        return False
    seen.add(name)
    return any(any(_asks(c, funcs, seen) for c in _called_names(fn)) for _, fn in funcs[name])


def _entry_points() -> list[tuple[str, str]]:
    funcs = _functions()
    entries = []
    for name, defs in funcs.items():
        for module, fn in defs:
            args = [a.arg for a in fn.args.args + fn.args.kwonlyargs]
            if not name.startswith("_") and "actor" in args and (module, name) not in EFFECT_RECORDERS:
                entries.append((module, name))
    return sorted(set(entries))


ENTRY_POINTS = _entry_points()


def test_there_are_entry_points_to_check():
    modules = {m for m, _ in ENTRY_POINTS}
    assert {"catalog/service.py", "identity/service.py", "oversight/service.py"} <= modules
    assert len(ENTRY_POINTS) > 25


@pytest.mark.parametrize(("module", "name"), ENTRY_POINTS, ids=[f"{m}:{n}" for m, n in ENTRY_POINTS])
def test_entry_point_asks_the_decision_point(module, name):
    funcs = _functions()
    fn = next(f for m, f in funcs[name] if m == module)
    assert any(_asks(c, funcs, set()) for c in _called_names(fn)), (
        f"{module}:{name} takes an actor but never reaches policies.guard (authorized / allow_or_raise / decide)")


def test_the_check_catches_a_function_that_skips_the_guard(tmp_path):
    src = "def leak(session, *, actor, code):\n    return session.get(code)\n"
    fn = ast.parse(src).body[0]
    assert not any(_asks(c, {"leak": [("x.py", fn)]}, set()) for c in _called_names(fn))
