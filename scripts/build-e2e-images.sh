#!/usr/bin/env bash
# Builds the two images of the e2e tier with the local Docker engine (no root needed):
#   $CHROMA_E2E_IMAGE        (default chroma-service:e2e)    the project's Dockerfile
#   $CHROMA_E2E_TOOLS_IMAGE  (default chroma-e2e-tools:e2e)  tests/e2e/images/tools.Dockerfile:
#                            moto (S3) + the Qdrant stand-in, on the same base image
# Used by scripts/local-cluster.sh (images phase) and by the kind fixtures of tests/e2e.
# Builds use the host network (the local cluster's dockerd has no bridge).
# Logs go to $CHROMA_E2E_BUILD_LOGS (default: a temporary directory); stdout stays quiet.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
IMAGE="${CHROMA_E2E_IMAGE:-chroma-service:e2e}"
TOOLS_IMAGE="${CHROMA_E2E_TOOLS_IMAGE:-chroma-e2e-tools:e2e}"
LOGS="${CHROMA_E2E_BUILD_LOGS:-$(mktemp -d)}"
mkdir -p "$LOGS"
export DOCKER_BUILDKIT=0  # the legacy builder: no buildx plugin needed, --network host works

docker build -q --network host -t "$IMAGE" "$ROOT" >"$LOGS/image-build.log" 2>&1 || {
  tail -30 "$LOGS/image-build.log" >&2
  echo "build-e2e-images: docker build of $IMAGE failed (see $LOGS/image-build.log)" >&2
  exit 1
}
# A small context, so the project's .dockerignore (which drops tests/) stays as it is.
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/tests"
cp "$ROOT/constraints.txt" "$ROOT/tests/e2e/images/tools.Dockerfile" "$ctx/"
cp "$ROOT/tests/__init__.py" "$ctx/tests/"
cp -r "$ROOT/tests/qdrant_standin" "$ctx/tests/"
find "$ctx" -name __pycache__ -prune -exec rm -rf {} +
docker build -q --network host -f "$ctx/tools.Dockerfile" \
  -t "$TOOLS_IMAGE" "$ctx" >"$LOGS/tools-build.log" 2>&1 || {
  tail -30 "$LOGS/tools-build.log" >&2
  echo "build-e2e-images: docker build of $TOOLS_IMAGE failed (see $LOGS/tools-build.log)" >&2
  exit 1
}
