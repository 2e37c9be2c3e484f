#!/usr/bin/env bash
# Runs the whole suite (or the pytest arguments given, e.g. `scripts/test.sh tests/e2e`).
# Called by `make test` (and so by .ci/run). Phases, each timed:
#   assets    kube-apiserver + etcd (+ kubectl, helm) for the control-plane tier
#             (scripts/envtest-assets.sh, cached), unless KUBEBUILDER_ASSETS is set
#   cluster   the local one-node Kubernetes of scripts/local-cluster.sh for the e2e tier,
#             where this machine can run it (root, Linux); elsewhere the e2e fixtures
#             use kind or an existing cluster (CHROMA_E2E_CLUSTER), or skip saying why
#   pytest    the tests
#   teardown  `local-cluster.sh down`, always (failure, interrupt), when this script
#             brought the cluster up; CHROMA_E2E_KEEP=1 keeps it for a next run
set -euo pipefail
cd "$(dirname "$0")/.."
timings=()
phase_start=0
begin() { phase_start=$(date +%s); echo "test.sh: $1..." >&2; }
end() { timings+=("$1 $(($(date +%s) - phase_start))s"); }
report() { echo "test.sh: timings: ${timings[*]:-none}" >&2; }

# Control-plane tests need kube-apiserver + etcd: use KUBEBUILDER_ASSETS when the
# caller set it, else build them once into a cache outside the repo.
if [ -z "${KUBEBUILDER_ASSETS:-}" ] && [ -x scripts/envtest-assets.sh ]; then
  begin assets
  KUBEBUILDER_ASSETS="$(scripts/envtest-assets.sh)"
  export KUBEBUILDER_ASSETS
  end assets
fi

started_cluster=0
teardown() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$started_cluster" = 1 ] && [ "${CHROMA_E2E_KEEP:-}" != 1 ]; then
    begin teardown
    scripts/local-cluster.sh down || rc=1
    end teardown
  fi
  report
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

wants_e2e=1
for arg in "$@"; do
  case "$arg" in tests/unit* | tests/integration* | tests/controlplane* | tests/qdrant_standin*) wants_e2e=0 ;; esac
done
case "$wants_e2e:${CHROMA_E2E_CLUSTER:-auto}" in
  1:auto | 1:local)
    if why="$(scripts/local-cluster.sh check)"; then
      begin cluster
      scripts/local-cluster.sh status >/dev/null 2>&1 || started_cluster=1
      scripts/local-cluster.sh up
      # The fixtures use this cluster as it is now (images just built and imported).
      export CHROMA_E2E_CLUSTER=local CHROMA_E2E_BUILD=0
      end cluster
    else
      echo "test.sh: no local cluster here ($why): the e2e tier uses kind or skips" >&2
    fi
    ;;
esac

begin pytest
status=0
.venv/bin/pytest "$@" || status=$?
end pytest
exit "$status"
