"""The off-the-shelf checks: hadolint, yamllint, kustomize and kubernetes-validate --strict (as in CI)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import kubernetes_validate.utils as kv
import pytest
import yaml
from yamllint import linter
from yamllint.config import YamlLintConfig

from tests.k8s.manifests import (
    HADOLINT,
    K8S,
    K8S_VERSIONS,
    OVERLAYS,
    ROOT,
    Doc,
    load_file,
    manifest_files,
)

YAMLLINT = YamlLintConfig(file=str(K8S / ".yamllint.yaml"))


def _validate(doc: Doc, version: str) -> None:
    """Strict schema validation; a kind without a schema is an error here, not the CLI's mere warning."""
    kv.validate(doc, version, strict=True)


def test_every_manifest_file_is_found() -> None:
    names = {p.relative_to(K8S).as_posix() for p in manifest_files()}
    assert {
        "base/deployment.yaml",
        "base/networkpolicies.yaml",
        "components/in-cluster-postgres/statefulset.yaml",
    } <= names


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.relative_to(K8S).as_posix())
def test_manifest_file_validates_strictly(path: Path) -> None:
    docs = load_file(path)
    assert docs, f"{path} holds no object"
    for version in K8S_VERSIONS:
        for doc in docs:
            _validate(doc, version)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_overlay_validates_strictly(rendered: dict[str, list[Doc]], overlay: str) -> None:
    for version in K8S_VERSIONS:
        for doc in rendered[overlay]:
            _validate(doc, version)


def test_strict_validation_catches_a_misspelled_field() -> None:
    doc = load_file(K8S / "base" / "service.yaml")[0]
    doc["spec"]["selectr"] = doc["spec"].pop("selector")
    with pytest.raises(kv.ValidationError):
        _validate(doc, K8S_VERSIONS[-1])


def test_strict_validation_catches_a_wrong_type() -> None:
    doc = load_file(K8S / "base" / "hpa.yaml")[0]
    doc["spec"]["minReplicas"] = "two"
    with pytest.raises(kv.ValidationError):
        _validate(doc, K8S_VERSIONS[-1])


def test_unknown_kind_is_an_error_not_a_warning() -> None:
    with pytest.raises(kv.SchemaNotFoundError):
        _validate({"apiVersion": "v1", "kind": "Sekret", "metadata": {"name": "x"}}, K8S_VERSIONS[-1])


def _yaml_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml"))


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: p.relative_to(K8S).as_posix())
def test_yamllint_clean(path: Path) -> None:
    problems = list(linter.run(path.read_text(encoding="utf-8"), YAMLLINT, str(path)))
    assert not problems, "\n".join(f"{path}:{p.line}:{p.column} {p.rule} {p.desc}" for p in problems)


def test_yamllint_config_rejects_duplicate_keys() -> None:
    # PyYAML (and so kubernetes-validate) silently keeps the last duplicate; only yamllint notices.
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  name: b\n"
    assert yaml.safe_load(text)["metadata"]["name"] == "b"
    rules = {p.rule for p in linter.run(text, YAMLLINT)}
    assert "key-duplicates" in rules


def test_hadolint_clean(tools: None) -> None:
    done = subprocess.run(
        [str(HADOLINT), "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_catches_an_unpinned_base(tools: None, tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install uv\n", encoding="utf-8")
    done = subprocess.run([str(HADOLINT), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "DL3006" in done.stdout  # untagged image


def test_script_and_tests_check_the_same_things() -> None:
    script = (ROOT / "scripts" / "validate-k8s.sh").read_text(encoding="utf-8")
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "validate-k8s.sh")]).returncode == 0
    assert f'K8S_VERSIONS="${{K8S_VERSIONS:-{" ".join(K8S_VERSIONS)}}}"' in script
    assert " ".join(f"k8s/{o}" for o in OVERLAYS) in script
    assert "--strict" in script and "--load-restrictor LoadRestrictionsNone" in script
