"""policies layer: the policy files, the one decision point, the vocabulary and masking.

The files (this directory is both the package and the policy directory; `pdg policies check` validates it):
    vocabulary.yaml      categories, grades G1..G4 (GB/T 43697-2024), field tags with checks and masking,
                         open/share types, output-control defaults, risk-alert thresholds
    schema.cedarschema   principals, the actions of actions.py, resources, context
    access.cedar         baseline rules; hard lines are `forbid` rules nothing can override
    scenarios/*.yaml     emergency scenarios, each with an overlay of extra `permit` rules

The API other layers use (re-exported here, imported lazily so `policies.actions` stays cheap):
    get_engine() -> Engine / set_engine(engine)
    Engine.load(dir=None) · engine.reload(dir=None) -> version · engine.policy_version
    engine.authorize(actor, action, resource, context=None, *, scenario=None) -> Decision
    engine.authorize_batch([(actor, action, resource, context), ...], *, scenario=None) -> [Decision]
    engine.require(actor, action, resource, context=None, *, scenario=None) -> Decision, else Denied
    Resource.dataset(code, category=, grade=, open_type=, share_type=, owner=)
    Resource.organisation(code, kind) · Resource.audit_log() · Resource.scenario(id)
    Context(grant=Grant(...), purpose=, columns=, raw_grade=, requester=, requester_org=, requester_role=,
            scenario=, at=)
    Decision(allowed, reasons, policy_version, scenario, action, errors)   (all in policies/model.py)
    mask_frame(df, fields: {column: tag}, audience: public|share|sandbox, pseudonym_key=None) -> DataFrame
    vocabulary: default(), grade_of_fields(), checks_for_tag(), masking_for(), may_open(), may_share(),
                edition_grade(), check_types()
    check_dir(path=None) -> [Problem(file, line, message)]
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Engine": "policies.engine",
    "Decision": "policies.engine",
    "Resource": "policies.engine",
    "Context": "policies.engine",
    "Grant": "policies.engine",
    "get_engine": "policies.engine",
    "set_engine": "policies.engine",
    "mask_frame": "policies.masking",
    "mask_series": "policies.masking",
    "check_dir": "policies.check",
    "Problem": "policies.check",
    "ACTIONS": "policies.actions",
}

__all__ = [*_EXPORTS, "vocabulary", "masking", "require", "authorize"]


def authorize(*args: Any, **kwargs: Any) -> Any:
    """`get_engine().authorize(...)`."""
    from policies.engine import get_engine

    return get_engine().authorize(*args, **kwargs)


def require(*args: Any, **kwargs: Any) -> Any:
    """`get_engine().require(...)`: raises Denied when the answer is no."""
    from policies.engine import get_engine

    return get_engine().require(*args, **kwargs)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in ("vocabulary", "masking"):
        return importlib.import_module(f"policies.{name}")
    raise AttributeError(f"module 'policies' has no attribute {name!r}")
