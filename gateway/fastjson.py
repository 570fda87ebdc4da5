"""A JSON response for large row payloads, without FastAPI's per-value `jsonable_encoder` walk.

A 100-row page has a thousand values; walking them in Python cost more than reading them. Rows hold
JSON-native values already (the row store keeps text, numbers and NULL); anything else is encoded the
way `jsonable_encoder` would (dates as ISO text, decimals as numbers, bytes as text).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from typing import Any

from fastapi.responses import Response


def _default(o: Any) -> Any:
    if isinstance(o, dt.date | dt.time):  # datetime is a date
        return o.isoformat()
    if isinstance(o, decimal.Decimal):
        return int(o) if o == o.to_integral_value() else float(o)
    if isinstance(o, bytes):
        return o.decode("utf-8", "replace")
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def json_response(content: Any, status_code: int = 200) -> Response:
    body = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_default)
    return Response(body.encode("utf-8"), status_code=status_code, media_type="application/json")
