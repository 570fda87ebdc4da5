"""The policy ConfigMaps carry exactly the files of policies/, mounted at the same relative paths."""

from __future__ import annotations

from pathlib import PurePosixPath

import yaml

from tests.k8s.manifests import K8S, ROOT, Doc, pod_templates

POLICIES = ROOT / "policies"


def _policy_files() -> set[str]:
    """What the policy loader reads: the vocabulary, Cedar policies and schema, and scenario overlays."""
    files = {p for pattern in ("*.yaml", "*.cedar", "*.cedarschema") for p in POLICIES.glob(pattern)}
    files |= set((POLICIES / "scenarios").glob("*.yaml"))
    return {p.relative_to(POLICIES).as_posix() for p in files}


def _generators() -> dict[str, dict[str, str]]:
    """ConfigMap name -> {key: source path relative to policies/} from the base kustomization."""
    kustomization = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text(encoding="utf-8"))
    out: dict[str, dict[str, str]] = {}
    for gen in kustomization["configMapGenerator"]:
        if gen["name"].startswith("pdg-polic"):
            entries = {}
            for item in gen["files"]:
                key, source = item.split("=", 1)
                resolved = (K8S / "base" / source).resolve()
                entries[key] = resolved.relative_to(POLICIES.resolve()).as_posix()
            out[gen["name"]] = entries
    return out


def test_the_expected_policy_files_exist() -> None:
    assert {"vocabulary.yaml", "access.cedar", "schema.cedarschema"} <= _policy_files()


def test_generators_carry_every_policy_file_and_nothing_else() -> None:
    carried = [source for entries in _generators().values() for source in entries.values()]
    assert sorted(carried) == sorted(_policy_files()), (
        "update configMapGenerator in k8s/base/kustomization.yaml"
    )


def _mounted_layout(docs: list[Doc]) -> dict[str, dict[str, str]]:
    """pod owner -> {path inside the policies mount: 'ConfigMap-name-prefix/key'}."""
    layouts: dict[str, dict[str, str]] = {}
    for pod in pod_templates(docs):
        for c in pod.containers():
            for m in c.get("volumeMounts", []):
                if m["mountPath"] != "/etc/pdg/policies":
                    continue
                (vol,) = [v for v in pod.spec["volumes"] if v["name"] == m["name"]]
                layout: dict[str, str] = {}
                for src in vol["projected"]["sources"]:
                    cm = src["configMap"]
                    # Generated names end in -<hash>; strip it to compare with the generator name.
                    base = cm["name"].rsplit("-", 1)[0]
                    configmap = next(
                        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == cm["name"]
                    )
                    if "items" in cm:
                        layout |= {i["path"]: f"{base}/{i['key']}" for i in cm["items"]}
                    else:
                        layout |= {k: f"{base}/{k}" for k in configmap["data"]}
                layouts[f"{pod.owner}/{c['name']}"] = layout
    return layouts


def test_pods_see_the_repository_layout(rendered: dict[str, list[Doc]]) -> None:
    generators = _generators()
    for docs in rendered.values():
        layouts = _mounted_layout(docs)
        assert layouts, "no container mounts the policies"
        for owner, layout in layouts.items():
            # Each mounted path must hold the file of the same relative path in policies/.
            for path, ref in layout.items():
                name, key = ref.split("/", 1)
                assert generators[name][key] == path, f"{owner}: {path} holds {generators[name][key]}"
            assert set(layout) == _policy_files(), f"{owner}: mounted {sorted(layout)}"
            assert all(not PurePosixPath(p).is_absolute() and ".." not in p for p in layout)


def test_configmap_content_is_the_file_content(rendered: dict[str, list[Doc]]) -> None:
    generators = _generators()
    for cm in (d for d in rendered["base"] if d["kind"] == "ConfigMap"):
        base = cm["metadata"]["name"].rsplit("-", 1)[0]
        for key, value in cm.get("data", {}).items():
            if base in generators:
                assert value == (POLICIES / generators[base][key]).read_text(encoding="utf-8")
