#!/usr/bin/env bash
# Runs the whole test suite. Called by `make test` (and so by .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
# Control-plane tests need kube-apiserver + etcd: use KUBEBUILDER_ASSETS when the
# caller set it, else build them once into a cache outside the repo.
if [ -z "${KUBEBUILDER_ASSETS:-}" ] && [ -x scripts/envtest-assets.sh ]; then
  KUBEBUILDER_ASSETS="$(scripts/envtest-assets.sh)"
  export KUBEBUILDER_ASSETS
fi
exec .venv/bin/pytest "$@"
