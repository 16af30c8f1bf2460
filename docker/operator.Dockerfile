# VisionOps control-plane image: the kopf operator (`python -m visionops_operator`). It talks to the Kubernetes
# API and to MLflow over MLflow's REST API (visionops/mlflow_rest.py), so it has no mlflow, pandas or numpy, and
# no torch or ultralytics; the chart's MLflow tracking server has its own image (docker/mlflow.Dockerfile).
#
#   docker build -f docker/operator.Dockerfile -t visionops-operator:0.1.0 .
#
# One stage, dependencies first and the project's code last, so a code change rebuilds only the COPY layers.
# BASE_IMAGE: any Debian bookworm image with Python 3.11 (python3 -m venv must work); substitute a
# locally built one where no registry is reachable.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- pins: this image's requirements from pyproject.toml. The main stage copies only the resulting file, so
# its dependency layer stays cached while pyproject.toml changes elsewhere (docker compares file contents).
FROM ${BASE_IMAGE} AS pins
COPY pyproject.toml docker/pins.py /pins/
RUN python3 /pins/pins.py operator --pyproject /pins/pyproject.toml > /pins/requirements.txt

# ---- the image --------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="visionops-operator" \
      org.opencontainers.image.description="VisionOps operator (kopf): TrainingRuns and DriftChecks" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
# The pinned wheels in a virtual environment, in one layer, with no pip cache and no build files left behind.
# The check fails the build if MLflow (and its pandas/numpy) or torch ever come back through a dependency.
COPY --from=pins /pins/requirements.txt /tmp/pins/
# PIP_CA_URL (build only): where egress goes through a TLS-intercepting proxy, hack/images.sh serves the
# build host's CA bundle on loopback; pip uses it inside this one RUN, which deletes it: no layer keeps it,
# and the image trusts only its own CAs at run time.
ARG PIP_CA_URL=
RUN export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 \
 && if [ -n "$PIP_CA_URL" ]; then python3 -c "import sys, urllib.request as r; r.urlretrieve(sys.argv[1], '/tmp/pip-ca.pem')" \
      "$PIP_CA_URL" && export PIP_CERT=/tmp/pip-ca.pem; fi \
 && python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install -r /tmp/pins/requirements.txt \
 && /opt/venv/bin/python -c "import importlib.util as u, kopf, kubernetes; \
heavy = [m for m in ('mlflow', 'pandas', 'numpy', 'torch', 'ultralytics') if u.find_spec(m)]; \
assert not heavy, f'{heavy} in the operator image'; print('kopf', kopf.__version__)" \
 && rm -rf /tmp/pins /tmp/pip-ca.pem
RUN groupadd --gid 1000 visionops \
 && useradd --uid 1000 --gid 1000 --home-dir /home/visionops --create-home --shell /usr/sbin/nologin visionops
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VISIONOPS_CONFIG_DIR=/app/configs \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=true \
    ITERATIVE_DO_NOT_TRACK=1 \
    HF_HUB_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    YOLO_OFFLINE=1 \
    HOME=/home/visionops
# Only the modules the operator imports: visionops (config, registry, promotion, results, mlflow_rest) and its own
# package.
COPY configs/ /app/configs/
COPY visionops/ /app/visionops/
COPY operator/visionops_operator/ /app/visionops_operator/
WORKDIR /home/visionops
USER 1000:1000
EXPOSE 8080
ENTRYPOINT ["python", "-m", "visionops_operator"]
