# VisionOps developer entry points. `make demo` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
CACHE ?= $(HOME)/.cache/visionops

.PHONY: venv demo test lint cluster-up cluster-down k8s-binaries bench

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip setuptools wheel
	$(PY) -m pip install -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/visionops demo

test: venv k8s-binaries
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: venv
	$(PY) -m ruff check .

k8s-binaries:
	hack/build-k8s.sh

# NODE=1: also a node that runs pods (root; `make node-deps` first). One build-k8s.sh call, so that a cold
# build compiles the Kubernetes commands in one `go build`.
cluster-up:
	hack/build-k8s.sh $(if $(filter 1,$(NODE)),--node)
	hack/cluster.sh up $(if $(filter 1,$(NODE)),--node)

cluster-down:
	hack/cluster.sh down

.PHONY: node-deps

# Debian packages of the node and the image builds (root; idempotent).
node-deps:
	hack/node-deps.sh
