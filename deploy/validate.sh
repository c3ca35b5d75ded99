#!/usr/bin/env bash
# Checks the deployment files without a cluster or a container engine, in about a second once
# the tools are installed (`make deploy-check`):
#   1. every YAML under deploy/kubernetes/ (tls/ too) against the Kubernetes API schemas, strictly
#      (an unknown field, e.g. a misspelt one, is an error), for each version in K8S_VERSIONS;
#   2. the rules between the manifests and the Dockerfile (deploy/check_manifests.py);
#   3. the Dockerfile with hadolint.
# The tools are pinned in deploy/requirements.txt and installed into .venv-deploy/ (git-ignored)
# on the first run, or when the pins change (`--install-only` stops there). Exits non-zero on any
# error or warning.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
python="${PYTHON:-python3}"
venv=.venv-deploy
# The oldest Kubernetes validated (backoffLimitPerIndex with FailIndex, and the preStop sleep
# action, are beta and on by default there) and the newest the validator knows.
K8S_VERSIONS="${K8S_VERSIONS:-1.31.0 1.37.0}"

stamp="$venv/.installed-$(sha256sum deploy/requirements.txt | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "installing the validation tools into $venv (deploy/requirements.txt) ..."
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -r deploy/requirements.txt
  touch "$stamp"
fi
if [ "${1:-}" = "--install-only" ]; then
  exit 0
fi

mapfile -t manifests < <(find deploy/kubernetes -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
if [ "${#manifests[@]}" -eq 0 ]; then
  echo "ERROR no manifests under deploy/kubernetes" >&2
  exit 1
fi

status=0
for version in $K8S_VERSIONS; do
  # kubernetes-validate exits 0 on a warning (e.g. no schema for a kind), so read its lines:
  # anything but INFO fails the check.
  out=$("$venv/bin/kubernetes-validate" --strict --kubernetes-version "$version" "${manifests[@]}" 2>&1) || status=1
  printf '%s\n' "$out"
  if grep -qv '^INFO ' <<<"$out"; then
    status=1
  fi
done

"$venv/bin/python" deploy/check_manifests.py || status=1

if "$venv/bin/hadolint" --no-color Dockerfile; then
  echo "INFO Dockerfile passed hadolint $("$venv/bin/hadolint" --version | awk '{print $NF}')"
else
  status=1
fi

if [ "$status" -ne 0 ]; then
  echo "deploy/validate.sh: FAILED" >&2
else
  echo "deploy/validate.sh: ${#manifests[@]} manifests (Kubernetes $K8S_VERSIONS) and the Dockerfile are valid"
fi
exit "$status"
