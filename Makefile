# VisionOps developer entry points. `make demo` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
CACHE ?= $(HOME)/.cache/visionops

.PHONY: pictures venv demo test prebuild go-builds test-images test-node-deps lint cluster-up cluster-down k8s-binaries kserve-binary kserve-up kserve-down bench

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip setuptools wheel
	$(PY) -m pip install -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/visionops demo

test: venv prebuild
	$(PY) -m ruff check .
	$(PY) -m pytest

# What the tests build once and cache outside the repo (~/.cache/visionops). Two lanes: the Go builds
# (CPU bound) and, as root, the Debian packages and image builds (network and disk bound) side by side.
ROOT := $(filter 0,$(shell id -u))
prebuild:
	@$(MAKE) --no-print-directory -j2 go-builds $(if $(ROOT),test-images)

go-builds:
	hack/build-k8s.sh $(if $(ROOT),--node)
	hack/kserve.sh build

# The operator, job and predictor images of the e2e test, built (not imported: the test's node does that).
test-images: test-node-deps
	@if command -v dockerd >/dev/null && command -v debootstrap >/dev/null; then hack/images.sh --no-import; \
	else echo "no dockerd/debootstrap: the e2e test will skip"; fi

# As root with apt, the Debian packages the node, e2e, console browser and alert tests need (idempotent); elsewhere
# those tests skip and say why.
test-node-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then hack/node-deps.sh && hack/node-deps.sh browser \
	&& hack/node-deps.sh monitoring; \
	else echo "not root with apt-get: the node, e2e, console browser and promtool tests will skip"; fi

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

.PHONY: images node-deps e2e kind-up kind-down kind-e2e

# Debian packages of the node and the image builds (root; idempotent).
node-deps:
	hack/node-deps.sh

# base, operator, job and predictor images, built locally and imported into the running node.
images:
	hack/images.sh

# The KServe controller (manager) built from the Go module proxy, cached like the Kubernetes binaries.
kserve-binary:
	hack/kserve.sh build

# Run it against the running local cluster in Standard (raw deployment) mode; stop it before cluster-down.
kserve-up: kserve-binary
	hack/kserve.sh up

kserve-down:
	hack/kserve.sh down

# The README's pictures from a real run: the demo (its prediction.png becomes docs/demo-prediction.png), then the
# console's browser tests with the demo's training recipe, their screenshots written to docs/console/ (root, as
# `make test`; a plain test run writes them under .visionops/screenshots/).
pictures: venv prebuild
	rm -rf .visionops/pictures-demo
	$(VENV)/bin/visionops demo --workdir .visionops/pictures-demo
	cp .visionops/pictures-demo/prediction.png docs/demo-prediction.png
	VISIONOPS_PICTURES=1 $(PY) -m pytest tests/console --durations=5

# The end-to-end test alone: the chart on the local node (started or reused), the project's images built and
# imported, a TrainingRun, promotion, HTTP predictions and a DriftCheck (tests/e2e; root, `make node-deps`).
e2e: venv prebuild
	$(PY) -m pytest -m e2e tests/e2e --durations=0

# The user's path on this machine: a kind cluster from kind-config.yaml on a node image built here, KServe from
# its own charts, the project's images loaded with `kind load docker-image`, the chart installed with
# ci/05-kind-values.yaml (root: the project's dockerd; docs/kind.md). Prints the context and URLs.
kind-up:
	hack/kind.sh up

kind-down:
	hack/kind.sh down

# The e2e tests on that kind cluster (created unless it runs; deleted after when this run created it).
kind-e2e: venv prebuild
	VISIONOPS_E2E_NODE=kind $(PY) -m pytest -m e2e tests/e2e --durations=0
