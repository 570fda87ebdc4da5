"""The one decision point: Cedar policies + schema + scenario overlays, parsed once, reloaded safely.

    engine = get_engine()
    decision = engine.authorize(actor, "dataset:read_open", Resource.dataset(...), Context(raw_grade=1))
    engine.require(actor, "dataset:publish", resource)          # raises Denied(decision=...)

Decisions carry the @ids of the rules that decided, the SM3 version of the policy files and the
scenario in force. An unknown action is a programming error (KeyError), not a silent deny.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cedarpy

from common import clock
from common.actor import Actor
from common.errors import Denied, Invalid
from gmcrypto.sm3 import Hasher
from policies import actions, cedartext, overlays
from policies import vocabulary as vocab_mod
from policies.model import NO_GRANT, RESOURCE_TYPES, Context, Decision, Grant, Resource

POLICY_DIR = vocab_mod.POLICY_DIR

__all__ = [
    "RESOURCE_TYPES",
    "Context",
    "Decision",
    "Engine",
    "Grant",
    "Resource",
    "get_engine",
    "policy_files",
    "set_engine",
    "version_of",
]


@dataclass(frozen=True)
class _Loaded:
    directory: Path
    version: str
    vocab: vocab_mod.Vocabulary
    sets: dict[tuple[str | None, str], cedarpy.PolicySet]  # (scenario, action) -> candidate rules
    reads: dict[tuple[str | None, str], frozenset[str] | None]  # context attributes those rules read
    scenarios: dict[str, overlays.Scenario]
    rule_ids: frozenset[str]


@lru_cache(maxsize=4096)
def _entities(principal: str, role: str, org: str, resource: Resource) -> cedarpy.Entities:
    """The parsed entity pair for one principal and resource; parsing is a third of a decision's cost."""
    user = {"uid": {"type": "User", "id": principal}, "attrs": {"uid": principal, "role": role, "org": org},
            "parents": []}  # fmt: skip
    return cedarpy.Entities.from_json_str(json.dumps([user, resource.entity()]))


def policy_files(directory: Path) -> list[Path]:
    """The files that make up a policy version, in a stable order."""
    files = [directory / "vocabulary.yaml", directory / "schema.cedarschema", directory / "access.cedar"]
    return files + sorted((directory / "scenarios").glob("*.yaml"))


def version_of(directory: Path) -> str:
    """SM3 over every policy file (relative name, length, bytes), hex."""
    h = Hasher()
    for p in policy_files(directory):
        data = p.read_bytes()
        name = p.relative_to(directory).as_posix().encode()
        h.update(len(name).to_bytes(4, "big") + name + len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


def _read(directory: Path) -> _Loaded:
    from policies.check import check_dir, format_problems

    problems = check_dir(directory)
    if problems:
        raise Invalid(f"policies in {directory} are invalid:\n{format_problems(problems)}")
    schema = (directory / "schema.cedarschema").read_text(encoding="utf-8")
    text = (directory / "access.cedar").read_text(encoding="utf-8")
    ids = {p.id for p in cedartext.policies(text) if p.id}
    scenarios = overlays.load_dir(directory, schema=schema, baseline_ids=ids)
    sets: dict[tuple[str | None, str], cedarpy.PolicySet] = {}
    reads: dict[tuple[str | None, str], frozenset[str] | None] = {}
    texts: dict[str | None, str] = {None: text}
    texts.update({sid: f"{text}\n{scn.overlay}" for sid, scn in scenarios.items()})
    for sid, full in texts.items():
        for name, part in cedartext.by_action(full, actions.ACTIONS).items():
            sets[(sid, name)] = cedarpy.PolicySet.from_str(part)
            reads[(sid, name)] = cedartext.context_attrs(part)
    return _Loaded(
        directory=directory,
        version=version_of(directory),
        vocab=vocab_mod.load(directory),
        sets=sets,
        reads=reads,
        scenarios=scenarios,
        rule_ids=frozenset(ids),
    )


class Engine:
    """The decision point. Thread-safe: a reload swaps one immutable snapshot."""

    def __init__(self, loaded: _Loaded) -> None:
        self._s = loaded

    @classmethod
    def load(cls, directory: str | Path | None = None) -> Engine:
        """Parse and validate the policy directory once (default: the packaged one); Invalid if broken."""
        return cls(_read(Path(directory) if directory is not None else POLICY_DIR))

    def reload(self, directory: str | Path | None = None) -> str:
        """Re-read the policies; a broken file keeps the old ones in force and raises Invalid."""
        self._s = _read(Path(directory) if directory is not None else self._s.directory)
        return self._s.version

    @property
    def policy_version(self) -> str:
        return self._s.version

    @property
    def directory(self) -> Path:
        return self._s.directory

    @property
    def vocabulary(self) -> vocab_mod.Vocabulary:
        return self._s.vocab

    @property
    def scenarios(self) -> dict[str, overlays.Scenario]:
        return dict(self._s.scenarios)

    @property
    def rule_ids(self) -> frozenset[str]:
        return self._s.rule_ids

    def _request(
        self,
        s: _Loaded,
        actor: Actor,
        action: str,
        resource: Resource,
        context: Context | None,
        scenario: str | None,
    ) -> tuple[dict[str, Any], list[dict[str, Any]], str | None]:
        spec = actions.spec(action)  # KeyError for an unregistered action
        if not isinstance(resource, Resource):
            raise Invalid(f"{action}: resource must be a policies.Resource, not {type(resource).__name__}")
        if resource.type != spec.resource:
            raise Invalid(f"{action} applies to a {spec.resource}, not a {resource.type}")
        if resource.type == "Dataset" and resource.category not in s.vocab.categories:
            raise Invalid(f"unknown category {resource.category!r}; one of {', '.join(s.vocab.categories)}")
        ctx = context or Context()
        sid = scenario if scenario is not None else ctx.scenario
        scn = None
        if sid:
            scn = s.scenarios.get(sid)
            if scn is None:
                raise Invalid(f"unknown scenario {sid!r}; one of {', '.join(s.scenarios) or 'none'}")
        at = clock.as_utc(ctx.at) if ctx.at is not None else clock.now()
        reads = s.reads[(sid or None, action)]
        grant: dict[str, Any] = NO_GRANT
        if ctx.grant is not None and (reads is None or "grant" in reads):
            grant = ctx.grant.cedar()
        cedar_ctx = {
            "now": int(at.timestamp()),
            "hour": at.astimezone(clock.SHANGHAI).hour,
            "scenario": sid or "",
            "participant": bool(scn and scn.participant(actor)),
            "in_scope": bool(scn and scn.in_scope(resource.category, resource.id)),
            "purpose": ctx.purpose,
            "columns": sorted(ctx.columns),
            "raw_grade": ctx.raw_grade,
            "requester": ctx.requester or "",
            "requester_org": ctx.requester_org or "",
            "requester_role": ctx.requester_role or "",
            "grant": grant,
        }
        if reads is not None:
            # Send only what this action's rules read: parsing the context is a large share of the cost.
            missing = reads - cedar_ctx.keys()
            if missing:
                raise Invalid(f"{action}: rules read context {sorted(missing)}, which the engine does not supply")
            cedar_ctx = {k: cedar_ctx[k] for k in reads}
        user = {
            "uid": {"type": "User", "id": actor.principal},
            "attrs": {"uid": actor.principal, "role": actor.role, "org": actor.org or ""},
            "parents": [],
        }
        request = {
            "principal": {"type": "User", "id": actor.principal},
            "action": {"type": "Action", "id": action},
            "resource": {"type": resource.type, "id": resource.id},
            "context": cedar_ctx,
        }
        return request, [user, resource.entity()], sid or None

    @staticmethod
    def _decision(s: _Loaded, result: cedarpy.AuthzResult, action: str, sid: str | None) -> Decision:
        diag = result.diagnostics
        names = diag.id_annotations_by_reason
        return Decision(
            allowed=result.allowed,
            reasons=tuple(sorted(names.get(r, r) for r in diag.reasons)),
            policy_version=s.version,
            scenario=sid,
            action=action,
            errors=tuple(str(e) for e in diag.errors),
        )

    def authorize(
        self,
        actor: Actor,
        action: str,
        resource: Resource,
        context: Context | None = None,
        *,
        scenario: str | None = None,
    ) -> Decision:
        """May `actor` do `action` on `resource` now? Baseline rules plus the `scenario` overlay, if any."""
        s = self._s
        req, _, sid = self._request(s, actor, action, resource, context, scenario)
        entities = _entities(actor.principal, actor.role, actor.org or "", resource)
        return self._decision(s, cedarpy.is_authorized(req, s.sets[(sid, action)], entities), action, sid)

    def authorize_batch(
        self,
        requests: Sequence[tuple[Actor, str, Resource, Context | None]],
        *,
        scenario: str | None = None,
    ) -> list[Decision]:
        """Many decisions in one call (e.g. filtering a listing); same answers as `authorize` one by one."""
        s = self._s
        groups: dict[tuple[str | None, str], list[int]] = {}
        built = []
        for i, (actor, action, resource, context) in enumerate(requests):
            req, entities, sid = self._request(s, actor, action, resource, context, scenario)
            built.append((req, entities, sid, action))
            groups.setdefault((sid, action), []).append(i)
        out: list[Decision | None] = [None] * len(built)
        for key, idxs in groups.items():
            sid = key[0]
            merged: dict[tuple[str, str], dict[str, Any]] = {}
            clash = False
            for i in idxs:
                for e in built[i][1]:
                    uid = (e["uid"]["type"], e["uid"]["id"])
                    if merged.setdefault(uid, e) != e:
                        clash = True  # same uid, different attributes: decide these one by one
            if clash:
                for i in idxs:
                    r = cedarpy.is_authorized(built[i][0], s.sets[key], built[i][1])
                    out[i] = self._decision(s, r, built[i][3], sid)
                continue
            results = cedarpy.is_authorized_batch([built[i][0] for i in idxs], s.sets[key], list(merged.values()))
            for i, r in zip(idxs, results, strict=True):
                out[i] = self._decision(s, r, built[i][3], sid)
        return [d for d in out if d is not None]

    def require(
        self,
        actor: Actor,
        action: str,
        resource: Resource,
        context: Context | None = None,
        *,
        scenario: str | None = None,
    ) -> Decision:
        """Like `authorize`, but a denial raises `Denied` carrying the decision."""
        d = self.authorize(actor, action, resource, context, scenario=scenario)
        if not d.allowed:
            why = ", ".join(d.reasons) if d.reasons else "no rule permits it"
            raise Denied(f"not allowed to {action} ({why})", decision=d)
        return d


_ENGINE: Engine | None = None
_LOCK = threading.Lock()


def get_engine() -> Engine:
    """The process's engine; the packaged policies are loaded on first use if none was set."""
    global _ENGINE
    if _ENGINE is None:
        with _LOCK:
            if _ENGINE is None:
                _ENGINE = Engine.load()
    return _ENGINE


def set_engine(engine: Engine | None) -> None:
    """Install the process's engine (startup, tests); None forgets it."""
    global _ENGINE
    _ENGINE = engine
