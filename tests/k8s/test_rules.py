"""Project rules no off-the-shelf tool checks, over every rendered overlay (and every file for Secrets)."""

from __future__ import annotations

import re

import pytest

from tests.k8s.manifests import (
    K8S,
    OVERLAYS,
    ROOT,
    Doc,
    PodTemplate,
    load_file,
    manifest_files,
    pod_templates,
    policies_selecting,
    policy_types,
    selector_matches,
)

SANDBOX = {"app.kubernetes.io/component": "sandbox-worker"}
GATEWAY = {"app.kubernetes.io/component": "gateway"}
DATABASE = {"app.kubernetes.io/component": "database"}
KUBE_DNS = {"k8s-app": "kube-dns"}


def _pods(docs: list[Doc], component: str) -> list[PodTemplate]:
    return [p for p in pod_templates(docs) if p.labels.get("app.kubernetes.io/component") == component]


@pytest.fixture(params=OVERLAYS)
def docs(request: pytest.FixtureRequest, rendered: dict[str, list[Doc]]) -> list[Doc]:
    return rendered[request.param]


# --- network isolation -------------------------------------------------------------------------------


def test_namespace_has_a_default_deny_for_both_directions(docs: list[Doc]) -> None:
    deny = [
        d
        for d in docs
        if d.get("kind") == "NetworkPolicy"
        and d["spec"].get("podSelector") == {}
        and policy_types(d) == {"Ingress", "Egress"}
        and not d["spec"].get("ingress")
        and not d["spec"].get("egress")
    ]
    assert deny, "no NetworkPolicy denies all ingress and egress for every pod"
    for pod in pod_templates(docs):
        assert any(d in deny for d in policies_selecting(docs, pod)), pod.owner


def sandbox_isolation_problems(docs: list[Doc]) -> list[str]:
    """Why a sandbox pod template could send or receive anything (empty when fully isolated)."""
    pods = _pods(docs, "sandbox-worker")
    if not pods:
        return ["no sandbox worker pod template rendered"]
    problems = []
    for pod in pods:
        policies = policies_selecting(docs, pod)
        # Isolated only if a policy covers both directions and (policies add up) none allows anything.
        if not any(policy_types(p) == {"Ingress", "Egress"} for p in policies):
            problems.append(f"{pod.owner}: no policy denies both ingress and egress")
        for p in policies:
            if p["spec"].get("ingress") or p["spec"].get("egress"):
                problems.append(f"{pod.owner}: opened by NetworkPolicy {p['metadata']['name']}")
        if pod.spec.get("dnsPolicy") != "None":
            problems.append(f"{pod.owner}: pointed at cluster DNS")
    return problems


def test_sandbox_pods_have_no_network_at_all(docs: list[Doc]) -> None:
    assert sandbox_isolation_problems(docs) == []


def _allow_policy(selector: Doc, **rules: list[Doc]) -> Doc:
    spec = {"podSelector": selector, "policyTypes": ["Ingress", "Egress"], **rules}
    return {"kind": "NetworkPolicy", "metadata": {"name": "allow", "namespace": "pdg"}, "spec": spec}


def test_isolation_rule_notices_any_policy_that_opens_sandbox_pods(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["overlays/production"]
    # An allow rule that selects sandbox pods only indirectly (every pod without a 'tier' label).
    sneaky = _allow_policy({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, egress=[{}])
    assert any("opened by" in p for p in sandbox_isolation_problems([*docs, sneaky]))
    ingress_only = _allow_policy({"matchLabels": SANDBOX}, ingress=[{"from": [{"podSelector": {}}]}])
    assert any("opened by" in p for p in sandbox_isolation_problems([*docs, ingress_only]))
    # The same policy aimed elsewhere does not count against the sandbox.
    elsewhere = _allow_policy({"matchLabels": GATEWAY}, egress=[{}])
    assert sandbox_isolation_problems([*docs, elsewhere]) == []


def test_sandbox_pods_carry_no_credentials(docs: list[Doc]) -> None:
    for pod in _pods(docs, "sandbox-worker"):
        assert pod.spec.get("automountServiceAccountToken") is False
        text = repr(pod.spec)
        assert "secretKeyRef" not in text and "'secret'" not in text and "secretRef" not in text, pod.owner


def test_selector_semantics() -> None:
    labels = {"app.kubernetes.io/component": "gateway", "tier": "web"}
    key = "app.kubernetes.io/component"
    assert selector_matches({}, labels)
    assert not selector_matches(None, labels)
    assert selector_matches(
        {"matchExpressions": [{"key": key, "operator": "In", "values": ["gateway"]}]}, labels
    )
    assert not selector_matches(
        {"matchExpressions": [{"key": key, "operator": "NotIn", "values": ["gateway"]}]}, labels
    )
    assert selector_matches(
        {"matchExpressions": [{"key": "x", "operator": "NotIn", "values": ["y"]}]}, labels
    )
    assert not selector_matches({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, labels)
    assert not selector_matches({"matchLabels": {"tier": "web", "zone": "a"}}, labels)


def _egress_rules(docs: list[Doc], pod: PodTemplate) -> list[Doc]:
    return [rule for p in policies_selecting(docs, pod) for rule in p["spec"].get("egress") or []]


def gateway_egress(docs: list[Doc]) -> tuple[dict[str, set[str]], list[str]]:
    """Per gateway/checkpoint pod: which of {dns, postgres} it reaches; and any other egress it has."""
    reach: dict[str, set[str]] = {}
    problems: list[str] = []
    for pod in _pods(docs, "gateway") + _pods(docs, "checkpoint"):
        allowed = reach.setdefault(pod.owner, set())
        for rule in _egress_rules(docs, pod):
            peers, ports = rule.get("to"), rule.get("ports")
            # A rule without peers or without ports allows every destination or every port.
            if not peers or not ports:
                problems.append(f"{pod.owner}: egress rule open to anything: {rule}")
                continue
            port_set = {(p.get("protocol", "TCP"), p.get("port")) for p in ports}
            for peer in peers:
                selector = peer.get("podSelector")
                in_kube_system = peer.get("namespaceSelector") == {
                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                }
                # A peer counts as PostgreSQL only if it selects the database pods and no other pods here.
                to_database = (
                    "namespaceSelector" not in peer
                    and selector_matches(selector, DATABASE)
                    and not any(
                        selector_matches(selector, p.labels)
                        for p in pod_templates(docs)
                        if p.labels != DATABASE
                    )
                )
                to_managed_database = "ipBlock" in peer and not peer["ipBlock"]["cidr"].endswith("/0")
                if in_kube_system and selector and selector_matches(selector, KUBE_DNS):
                    ok, what = port_set <= {("UDP", 53), ("TCP", 53)}, "dns"
                elif to_database or to_managed_database:
                    ok, what = port_set == {("TCP", 5432)}, "postgres"
                else:
                    ok, what = False, "other"
                if ok:
                    allowed.add(what)
                else:
                    problems.append(f"{pod.owner}: egress to {peer} on {sorted(port_set)}")
    return reach, problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_egress_reaches_only_postgres_and_dns(rendered: dict[str, list[Doc]], overlay: str) -> None:
    reach, problems = gateway_egress(rendered[overlay])
    assert problems == []
    assert reach, "no gateway or checkpoint pod rendered"
    # The base leaves the database to a component; every deployable overlay must reach one.
    expected = {"dns"} if overlay == "base" else {"dns", "postgres"}
    for owner, allowed in reach.items():
        assert allowed == expected, f"{owner} reaches {sorted(allowed)}, expected {sorted(expected)}"


def test_egress_rule_notices_extra_destinations(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["overlays/production"]
    gw = {"matchLabels": GATEWAY}
    extras = [
        [{}],  # everything
        [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": 5432}]}],
        [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"protocol": "TCP", "port": 443}]}],
        [{"to": [{"namespaceSelector": {}}], "ports": [{"protocol": "UDP", "port": 53}]}],
        [{"to": [{"podSelector": {"matchLabels": SANDBOX}}], "ports": [{"protocol": "TCP", "port": 8000}]}],
        [{"to": [{"podSelector": {}}], "ports": [{"protocol": "TCP", "port": 5432}]}],
    ]
    for egress in extras:
        _, problems = gateway_egress([*docs, _allow_policy(gw, egress=egress)])
        assert problems, egress


def test_gateway_ingress_only_from_ingress_controller_and_monitoring(docs: list[Doc]) -> None:
    for pod in _pods(docs, "gateway"):
        for policy in policies_selecting(docs, pod):
            for rule in policy["spec"].get("ingress") or []:
                assert rule.get("from") and rule.get("ports"), f"ingress rule open to anything: {rule}"
                assert [p["port"] for p in rule["ports"]] == [8000]
                namespaces = {
                    peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    for peer in rule["from"]
                }
                assert namespaces <= {"ingress-nginx", "monitoring"}, namespaces


def test_only_gateway_and_checkpoint_reach_postgres(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["overlays/development"]
    (policy,) = [
        d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "pdg-postgres-ingress"
    ]
    for pod in pod_templates(docs):
        component = pod.labels.get("app.kubernetes.io/component")
        admitted = any(
            selector_matches(peer.get("podSelector"), pod.labels)
            for r in policy["spec"]["ingress"]
            for peer in r["from"]
        )
        assert admitted == (component in ("gateway", "checkpoint")), pod.owner


# --- secrets ---------------------------------------------------------------------------------------------


def test_no_secret_object_is_rendered(docs: list[Doc]) -> None:
    # Secrets are created from the vault by documented commands; the manifests only reference them.
    assert [d["metadata"]["name"] for d in docs if d.get("kind") == "Secret"] == []


def test_no_secret_material_in_any_file() -> None:
    for path in [*manifest_files(), *K8S.rglob("kustomization.yaml"), *K8S.rglob("patches/*.yaml")]:
        text = path.read_text(encoding="utf-8")
        assert "PRIVATE KEY" not in text, path
        assert "secretGenerator" not in text, (
            f"{path}: Secrets are created by hand (docs/deploy.md), not generated"
        )
        for doc in load_file(path):
            if doc.get("kind") == "Secret":
                assert not doc.get("data") and not doc.get("stringData"), path


def test_every_referenced_secret_has_a_documented_create_command(docs: list[Doc]) -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    names: set[str] = set()
    for pod in pod_templates(docs):
        for c in pod.containers():
            names |= {
                e["valueFrom"]["secretKeyRef"]["name"]
                for e in c.get("env", [])
                if "secretKeyRef" in e.get("valueFrom", {})
            }
        for v in pod.spec.get("volumes", []):
            for src in v.get("projected", {}).get("sources", []):
                if "secret" in src:
                    names.add(src["secret"]["name"])
    for ing in (d for d in docs if d["kind"] == "Ingress"):
        names |= {t["secretName"] for t in ing["spec"].get("tls", [])}
    assert names >= {"pdg-signing-key", "pdg-kek", "pdg-database", "pdg-app"}
    for name in names:
        assert re.search(rf"kubectl[^\n]*create secret \w+ {name}\b", guide), (
            f"docs/deploy.md: no create command for {name}"
        )


# --- images, resources, security contexts, probes ------------------------------------------------------


def image_problem(image: str) -> str | None:
    """Why an image reference is not pinned (None if it has an explicit non-latest tag or a digest)."""
    name, _, digest = image.partition("@")
    if digest:
        return None if re.fullmatch(r"sha256:[0-9a-f]{64}", digest) else f"{image}: malformed digest"
    # The tag follows the last ':' of the last path component (a registry host may carry a port).
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        return f"{image}: untagged (means :latest)"
    tag = last.rsplit(":", 1)[1]
    if tag == "latest" or not re.fullmatch(r"[\w][\w.-]{0,127}", tag):
        return f"{image}: tag {tag!r}"
    return None


def test_image_rule() -> None:
    assert image_problem("registry.example.org:5000/pdg/app:0.1.0") is None
    assert image_problem("postgres:16-bookworm") is None
    assert image_problem("postgres@sha256:" + "a" * 64) is None
    assert image_problem("registry.example.org/pdg/app:latest")
    assert image_problem("registry.example.org:5000/pdg/app")
    assert image_problem("postgres")


def test_every_image_is_pinned(docs: list[Doc]) -> None:
    problems = [image_problem(c["image"]) for pod in pod_templates(docs) for c in pod.containers()]
    assert [p for p in problems if p] == []


def test_every_container_has_resources_and_a_locked_down_security_context(docs: list[Doc]) -> None:
    for pod in pod_templates(docs):
        ps = pod.spec.get("securityContext", {})
        assert ps.get("runAsNonRoot") is True and ps.get("seccompProfile") == {"type": "RuntimeDefault"}, (
            pod.owner
        )
        assert pod.spec.get("automountServiceAccountToken") is False, pod.owner
        for c in pod.containers():
            where = f"{pod.owner}/{c['name']}"
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(kind, {})), f"{where}: {kind}"
            sc = c.get("securityContext", {})
            assert sc.get("runAsNonRoot") is True, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("privileged", False) is False, where
            assert sc.get("capabilities") == {"drop": ["ALL"]}, where
            assert sc.get("seccompProfile") == {"type": "RuntimeDefault"}, where
            # A read-only root only works when the places the app writes to are volumes.
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{where}: /tmp is not a volume"


def test_gateway_probes_and_migrations(docs: list[Doc]) -> None:
    (deploy,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "pdg-gateway"]
    spec = deploy["spec"]["template"]["spec"]
    (gateway,) = spec["containers"]
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/health"
    assert gateway["startupProbe"]["httpGet"]["path"] == "/health"
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert gateway["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert [c["args"] for c in spec["initContainers"]] == [["db", "upgrade"]]
    mounts = {m["mountPath"]: m for m in gateway["volumeMounts"]}
    assert mounts["/etc/pdg/policies"]["readOnly"] is True
    assert set(mounts) == {"/var/lib/pdg/data", "/etc/pdg/policies", "/tmp"}


SECRET_SETTINGS = {"PDG_SECRET_KEY", "PDG_SIGNING_KEY_PEM", "PDG_KEK", "PDG_DATABASE_URL"}


def test_secret_settings_come_only_from_secret_refs(docs: list[Doc]) -> None:
    for d in docs:
        if d["kind"] == "ConfigMap":
            assert not SECRET_SETTINGS & set(d.get("data", {})), d["metadata"]["name"]
    for pod in pod_templates(docs):
        for c in pod.containers():
            for e in c.get("env", []):
                if e["name"] in SECRET_SETTINGS:
                    assert "secretKeyRef" in e.get("valueFrom", {}), f"{pod.owner}/{c['name']}: {e['name']}"
    (gateway,) = _pods(docs, "gateway")
    names = {e["name"] for e in gateway.spec["containers"][0]["env"]}
    assert names >= SECRET_SETTINGS, "the gateway needs its keyring, secret key and database URL"


def test_hpa_owns_the_replica_count(docs: list[Doc]) -> None:
    hpas = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    assert hpas and all(h["apiVersion"] == "autoscaling/v2" for h in hpas)
    for h in hpas:
        target = h["spec"]["scaleTargetRef"]
        (deploy,) = [
            d for d in docs if d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"]
        ]
        assert "replicas" not in deploy["spec"], "an applied replica count would fight the autoscaler"


def test_production_runs_several_replicas_on_a_shared_volume(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["overlays/production"]
    (hpa,) = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["minReplicas"] >= 3
    (pvc,) = [d for d in docs if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == "pdg-data"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert not [d for d in docs if d["kind"] == "StatefulSet"], "production uses an external PostgreSQL"
    (pdb,) = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    assert pdb["spec"]["maxUnavailable"] == 1


def test_ingress_terminates_tls_for_its_host(docs: list[Doc]) -> None:
    (ing,) = [d for d in docs if d["kind"] == "Ingress"]
    hosts = {r["host"] for r in ing["spec"]["rules"]}
    assert hosts and hosts <= {h for t in ing["spec"]["tls"] for h in t["hosts"]}
    settings = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("pdg-settings")
    ]
    assert settings and settings[0]["data"]["PDG_TLS_TERMINATED"] == "true"
