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
	hack/build-k8s.sh $(if $(ROOT),--kind)
	hack/kserve.sh build

# The project's images of the e2e tests, built and cached (the e2e fixture builds the kind node image and loads them).
test-images: test-node-deps
	@if command -v dockerd >/dev/null && command -v debootstrap >/dev/null; then hack/images.sh; \
	else echo "no dockerd/debootstrap: the e2e test will skip"; fi

# As root with apt, the Debian packages the e2e (kind, with PostgreSQL), console browser and alert tests need (idempotent); elsewhere
# those tests skip and say why.
test-node-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then hack/node-deps.sh && hack/node-deps.sh browser \
	&& hack/node-deps.sh monitoring && hack/node-deps.sh stores; \
	else echo "not root with apt-get: the e2e, console browser and promtool tests will skip"; fi

lint: venv
	$(PY) -m ruff check .

k8s-binaries:
	hack/build-k8s.sh

# The fast local control plane (no node: pods stay Pending; pods run on the kind cluster, make kind-up).
cluster-up:
	hack/build-k8s.sh
	hack/cluster.sh up

cluster-down:
	hack/cluster.sh down

.PHONY: images node-deps e2e kind-up kind-down kind-e2e

# Debian packages of the image builds and kind (root; idempotent).
node-deps:
	hack/node-deps.sh

# The base and the project's images, built locally (kind-up loads them into the kind node).
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

# The end-to-end tests alone, on the kind cluster (created unless it runs; deleted after when this run created
# it): the chart, a TrainingRun, promotion, HTTP predictions, a DriftCheck (tests/e2e; root, `make node-deps`).
e2e: venv prebuild
	$(PY) -m pytest -m e2e tests/e2e --durations=0

# The user's path on this machine: a kind cluster from kind-config.yaml on a node image built here, KServe from
# its own charts, the project's images loaded with `kind load docker-image`, the chart installed with
# ci/05-kind-values.yaml (root: the project's dockerd; docs/kind.md). Prints the context and URLs.
kind-up:
	hack/kind.sh up

kind-down:
	hack/kind.sh down

kind-e2e: e2e
