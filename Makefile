# Two entry points a newcomer needs: `make run` and `make test`.
# Everything else (a virtualenv, pinned packages, test servers, control-plane
# binaries) is installed or started by these targets, so a fresh machine needs
# only python3.11, make and (for the control-plane tests) Go.
SHELL := /bin/bash
VENV ?= .venv
UV_VERSION := 0.13.9
STAMP := $(VENV)/.installed

.PHONY: install run test lint envtest-assets clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	python3 -m uv --version 2>/dev/null | grep -q "$(UV_VERSION)" || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	python3 -m uv venv --quiet --allow-existing --python python3.11 $(VENV)
	python3 -m uv pip install --quiet --python $(VENV)/bin/python -e '.[dev,bench]' -c constraints.txt
	touch $(STAMP)

run: install
	$(VENV)/bin/chroma run

# The whole suite: unit, integration (real PostgreSQL, S3 endpoint, Qdrant),
# control plane (real kube-apiserver + etcd), kind e2e (skips without Docker).
test: install
	scripts/test.sh

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
