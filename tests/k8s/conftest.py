"""Session fixtures: the pinned tools installed once, every overlay rendered once."""

from __future__ import annotations

import pytest

from tests.k8s.manifests import OVERLAYS, Doc, ensure_tools, render


@pytest.fixture(scope="session")
def tools() -> None:
    """kustomize and hadolint at their pinned versions (installed by scripts/validate-k8s.sh if missing)."""
    ensure_tools()


@pytest.fixture(scope="session")
def rendered(tools: None) -> dict[str, list[Doc]]:
    """overlay path -> the objects `kustomize build` produces for it."""
    return {overlay: render(overlay) for overlay in OVERLAYS}
