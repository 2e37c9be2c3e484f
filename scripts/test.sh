#!/usr/bin/env bash
# Runs the whole suite (or the pytest arguments given, e.g. `scripts/test.sh tests/e2e`).
# Called by `make test` (and so by .ci/run). Phases, each timed:
#   assets    kube-apiserver + etcd (+ kubectl, helm) for the control-plane tier
#             (scripts/envtest-assets.sh, cached), unless KUBEBUILDER_ASSETS is set
#   chromium  Debian's chromium package for the browser tier (tests/browser), when missing
#             and this machine can install it (root, apt-get); else that tier skips
#             saying why. Playwright drives it; it never downloads a browser of its own.
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
  case "$arg" in tests/unit* | tests/integration* | tests/controlplane* | tests/qdrant_standin* | tests/browser*) wants_e2e=0 ;; esac
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

# The browser tier runs with the whole suite or when named.
wants_browser=$([ "$#" = 0 ] && echo 1 || echo 0)
for arg in "$@"; do
  case "$arg" in tests/browser*) wants_browser=1 ;; esac
done
chromium="${CHROMA_CHROMIUM:-/usr/bin/chromium}"
if [ "$wants_browser" = 1 ] && [ ! -x "$chromium" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    begin chromium
    mkdir -p test-artifacts
    if DEBIAN_FRONTEND=noninteractive apt-get update -qq >test-artifacts/apt.log 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
        >>test-artifacts/apt.log 2>&1 && [ -x "$chromium" ]; then
      echo "test.sh: installed chromium for the browser tier" >&2
    else
      echo "test.sh: could not install chromium (see test-artifacts/apt.log): the browser" \
        "tier skips" >&2
    fi
    end chromium
  else
    echo "test.sh: no $chromium and no way to install it here (needs root and apt-get):" \
      "the browser tier skips" >&2
  fi
fi

begin pytest
status=0
.venv/bin/pytest "$@" || status=$?
end pytest
exit "$status"
