"""Great Expectations 1.x, imported once per process and only when needed, progress bars off."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import pandas as pd

from common.errors import Invalid

_lock = threading.Lock()
_state: dict[str, Any] = {}


def gx() -> Any:
    """The great_expectations module (first call pays the import, ~4-9 s)."""
    with _lock:
        if "gx" not in _state:
            os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")  # no telemetry from a gateway
            import great_expectations

            _state["gx"] = great_expectations
        return _state["gx"]


def _batch_definition() -> Any:
    g = gx()
    with _lock:
        if "bd" not in _state:
            from great_expectations.data_context.types.base import ProgressBarsConfig

            ctx = g.get_context(mode="ephemeral")
            ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
            asset = ctx.data_sources.add_pandas("pdg").add_dataframe_asset("frame")
            _state["bd"] = asset.add_batch_definition_whole_dataframe("whole")
        return _state["bd"]


def suite_dict(suite_json: str | dict[str, Any]) -> dict[str, Any]:
    """Parse a stored suite (JSON text or dict) into a dict with an `expectations` list."""
    try:
        data = json.loads(suite_json) if isinstance(suite_json, str) else dict(suite_json)
    except json.JSONDecodeError:
        raise Invalid("the expectation suite is not valid JSON: fix the suite file") from None
    if not isinstance(data.get("expectations"), list):
        raise Invalid("the expectation suite has no 'expectations' list: fix the suite file")
    data.setdefault("name", "declared")
    return data


def load_suite(suite_json: str | dict[str, Any]) -> Any:
    """A GX ExpectationSuite; Invalid if GX would silently drop any expectation the file holds."""
    data = suite_dict(suite_json)
    held = len(data["expectations"])
    try:
        suite = gx().ExpectationSuite(**data)
    except Exception as exc:
        raise Invalid(f"the expectation suite could not be loaded: {str(exc)[:200]}") from None
    loaded = len(suite.expectations)
    if loaded < held:
        kept = {e.expectation_type for e in suite.expectations}
        lost = sorted({str(e.get("type")) for e in data["expectations"]} - kept)
        raise Invalid(
            f"the expectation suite holds {held} expectations but only {loaded} loaded; "
            f"unknown or invalid: {lost[:10]} — fix or remove them",
            extra={"held": held, "loaded": loaded, "lost": lost},
        )
    return suite


def validate(df: pd.DataFrame, expectations: list[dict[str, Any]], name: str = "gx") -> list[dict[str, Any]]:
    """Run expectation dicts through GX on `df`; results come back in the order given.

    GX reorders results, so each expectation is tagged with its position in `meta` and sorted back.
    """
    tagged = [{**e, "meta": {**(e.get("meta") or {}), "pdg_pos": i}} for i, e in enumerate(expectations)]
    suite = load_suite({"name": name, "expectations": tagged})
    batch = _batch_definition().get_batch(batch_parameters={"dataframe": df})
    res = batch.validate(suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": 10})
    out = [r.to_json_dict() for r in res.results]
    return sorted(out, key=lambda r: r["expectation_config"]["meta"]["pdg_pos"])
