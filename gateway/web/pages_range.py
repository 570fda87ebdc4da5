"""Operator pages for the data range: scenarios and experiments (filled in once datarange/ lands)."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.web.render import WebRoute

router = APIRouter(route_class=WebRoute, include_in_schema=False)
