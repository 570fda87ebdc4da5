"""`pdg policies check`: validate a policy directory and name file, line and problem for each fault."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cedarpy
import yaml
from pydantic import ValidationError

from policies import actions, cedartext, overlays
from policies import vocabulary as vocab_mod


@dataclass(frozen=True)
class Problem:
    """One fault: the file, its 1-based line (0 when the whole file is at fault), what is wrong."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


def format_problems(problems: list[Problem]) -> str:
    return "\n".join(str(p) for p in problems)


def _node_line(root: yaml.Node | None, loc: tuple[Any, ...]) -> int:
    """The line of the deepest YAML node on `loc` (a pydantic error location or our own path)."""
    node, line = root, (root.start_mark.line + 1) if root is not None else 1
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(key):
                    line = k.start_mark.line + 1
                    node = v
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _read_yaml(path: Path, out: list[Problem]) -> tuple[Any, yaml.Node | None]:
    try:
        text = path.read_text(encoding="utf-8")
        return yaml.safe_load(text), yaml.compose(text)
    except OSError as exc:
        out.append(Problem(str(path), 0, f"cannot read: {exc.strerror}"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        out.append(Problem(str(path), (mark.line + 1) if mark else 0, f"YAML syntax error: {exc}"))
    return None, None


def _pydantic(path: Path, root: yaml.Node | None, exc: ValidationError) -> list[Problem]:
    out = []
    for e in exc.errors():
        loc = tuple(e["loc"])
        where = ".".join(str(x) for x in loc)
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = f"unknown key {loc[-1]!r} (misspelled?)"
        out.append(Problem(str(path), _node_line(root, loc), f"{where}: {msg}"))
    return out


def check_vocabulary(directory: Path) -> list[Problem]:
    path = directory / "vocabulary.yaml"
    out: list[Problem] = []
    data, root = _read_yaml(path, out)
    if out:
        return out
    try:
        vocab = vocab_mod.Vocabulary.model_validate(data)
    except ValidationError as exc:
        return _pydantic(path, root, exc)
    return [Problem(str(path), _node_line(root, loc), msg) for loc, msg in vocab_mod.semantic_problems(vocab)]


_ACTION_DECL = re.compile(r"^\s*action\s+(.*?)\s+appliesTo", re.S | re.M)


def check_schema(directory: Path) -> tuple[str | None, list[Problem]]:
    """The schema text if it parses, with problems (including drift from policies/actions.py)."""
    path = directory / "schema.cedarschema"
    try:
        text = path.read_text(encoding="utf-8")
        cedarpy.Schema.from_str(text)
    except OSError as exc:
        return None, [Problem(str(path), 0, f"cannot read: {exc.strerror}")]
    except ValueError as exc:
        return None, [Problem(str(path), 0, f"Cedar schema error: {exc}")]
    out = []
    declared: set[str] = set()
    for m in _ACTION_DECL.finditer(text):
        declared.update(re.findall(r'"([^"]+)"', m.group(1)))
    for name in sorted(declared - set(actions.ACTIONS)):
        out.append(Problem(str(path), 0, f"action {name!r} is not in the registry policies/actions.py"))
    probes = "\n".join(
        f'permit (principal, action == Action::"{a.name}", resource is {a.resource});' for a in actions.ACTIONS.values()
    )
    for line, msg in cedartext.validation_problems(probes, text):
        a = list(actions.ACTIONS.values())[line - 1]
        out.append(Problem(str(path), 0, f"registry action {a.name!r} on {a.resource} does not fit the schema: {msg}"))
    return text, out


def check_access(directory: Path, schema: str | None) -> tuple[set[str], list[Problem]]:
    """Baseline rule ids and problems of access.cedar."""
    path = directory / "access.cedar"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return set(), [Problem(str(path), 0, f"cannot read: {exc.strerror}")]
    parse = cedartext.parse_problems(text)
    if parse:
        return set(), [Problem(str(path), ln, msg) for ln, msg in parse]
    out, ids = [], set()
    for p in cedartext.policies(text):
        if not p.id:
            out.append(Problem(str(path), p.line, 'every rule needs an @id("...")'))
        elif p.id in ids:
            out.append(Problem(str(path), p.line, f"duplicate @id {p.id!r}"))
        else:
            ids.add(p.id)
        if p.id and p.id.startswith("scenario."):
            out.append(Problem(str(path), p.line, "ids starting with 'scenario.' are reserved for overlays"))
    if schema is not None:
        out.extend(Problem(str(path), ln, msg) for ln, msg in cedartext.validation_problems(text, schema))
    return ids, out


def check_scenario(path: Path, schema: str | None, baseline_ids: set[str], vocab: Any) -> list[Problem]:
    out: list[Problem] = []
    _, root = _read_yaml(path, out)
    if out:
        return out
    try:
        _data, scn, problems = overlays.read_file(path)
    except ValidationError as exc:  # pragma: no cover - read_file catches these
        return _pydantic(path, root, exc)
    out.extend(Problem(str(path), _node_line(root, loc), f"{'.'.join(map(str, loc))}: {m}") for loc, m in problems)
    if scn is None:
        return out
    if vocab is not None:
        for i, c in enumerate(scn.datasets.categories):
            if c not in vocab.categories:
                line = _node_line(root, ("datasets", "categories", i))
                out.append(Problem(str(path), line, f"unknown category {c!r}"))
    if schema is None:
        return out
    offset = _node_line(root, ("overlay",))  # the `overlay: |` line; the rules start on the next one
    for ln, msg in overlays.overlay_problems(scn, schema=schema, baseline_ids=baseline_ids):
        out.append(Problem(str(path), offset + ln, f"overlay: {msg}"))
    return out


def check_dir(path: str | Path | None = None) -> list[Problem]:
    """Every problem in a policy directory (default: the packaged one); empty means it loads."""
    directory = Path(path) if path is not None else vocab_mod.POLICY_DIR
    if not directory.is_dir():
        return [Problem(str(directory), 0, "not a directory")]
    out = check_vocabulary(directory)
    try:
        vocab = vocab_mod.load(directory) if not out else None
    except Exception:
        vocab = None
    schema, schema_problems = check_schema(directory)
    out.extend(schema_problems)
    ids, access_problems = check_access(directory, schema)
    out.extend(access_problems)
    for scn_path in sorted((directory / "scenarios").glob("*.yaml")):
        out.extend(check_scenario(scn_path, schema, ids, vocab))
    return out
