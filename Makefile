# Two entry points a newcomer needs: `make run` and `make test`.
# Everything else (a virtualenv, pinned packages, test servers, control-plane
# binaries) is installed or started by these targets, so a fresh machine needs
# only Python 3.11 with its venv module, make and (for the control-plane tests) Go.
# Nothing is installed into the Python that starts it (scripts/install.sh).
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?=
STAMP := $(VENV)/.installed

.PHONY: install run test e2e cluster-up cluster-down lint envtest-assets clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt scripts/install.sh
	@VENV=$(VENV) PYTHON=$(PYTHON) scripts/install.sh
	@touch $(STAMP)

# `make run ARGS="--port 8001"` (or CHROMA_PORT=8001 make run): options of `chroma run`.
run: install
	@$(VENV)/bin/chroma run $(ARGS)

# The whole suite: unit, integration (real PostgreSQL, S3 endpoint, Qdrant),
# control plane (real kube-apiserver + etcd), e2e with real Pods (the local one-node
# cluster of scripts/local-cluster.sh, brought up and torn down around the run; kind or
# an existing cluster elsewhere; skips saying why where none can be had).
test: install
	scripts/test.sh

# Only the e2e tier (same cluster handling as `make test`).
e2e: install
	scripts/test.sh tests/e2e

# The local one-node cluster on its own (e.g. to keep it between e2e runs:
# `make cluster-up`, then `CHROMA_E2E_KEEP=1 make e2e` as often as needed).
cluster-up: install
	scripts/local-cluster.sh up

cluster-down:
	scripts/local-cluster.sh down

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
