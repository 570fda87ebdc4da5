"""The web portal, mounted at the root: pages per role over the same services as the API (gateway/web/)."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.web import pages_audit, pages_department, pages_public, pages_range, pages_sandbox

router = APIRouter(include_in_schema=False)
# Order matters where paths overlap: /datasets/new before /datasets/{code}, /audit/alerts before /audit/{seq}.
router.include_router(pages_department.router)
router.include_router(pages_public.router)
router.include_router(pages_sandbox.router)
router.include_router(pages_audit.router)
router.include_router(pages_range.router)
