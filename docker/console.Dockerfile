# VisionOps Console image: the six-step web UI and the drift page (`python -m visionops_console`, = `visionops
# console`; HTTP on 8090) over the custom resources (the Kubernetes client, in a pod its ServiceAccount) and MLflow
# (mlflow-skinny: the client only). No torch, no ultralytics, no OpenCV, no pandas.
#
#   docker build -f docker/console.Dockerfile -t visionops-console:0.1.0 .
#   docker run --rm -p 8090:8090 -v "$PWD/data:/datasets:ro" visionops-console:0.1.0 --host=0.0.0.0 --datasets=/datasets
#   (then http://localhost:8090/; without a cluster and MLflow it serves the dataset pages)
#
# Dependencies first and the project's code last: a code change rebuilds only the small COPY layers on top of
# the cached dependency layer (and a node that has the old image fetches only them).
# BASE_IMAGE: any Debian bookworm image with Python 3.11 (python3 -m venv must work).
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- pins: this image's requirements from pyproject.toml. The main stage copies only the resulting file, so
# its dependency layer stays cached while pyproject.toml changes elsewhere (docker compares file contents).
FROM ${BASE_IMAGE} AS pins
COPY pyproject.toml docker/pins.py /pins/
RUN python3 /pins/pins.py console --pyproject /pins/pyproject.toml > /pins/requirements.txt

# ---- the image --------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="visionops-console" \
      org.opencontainers.image.description="VisionOps Console: data, training, evaluation, analysis, deploy and drift pages" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
# The pinned wheels in a virtual environment, in one layer, with no pip cache and no build files left behind.
# The import check fails the build if a heavy package ever comes back through a dependency.
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
 && /opt/venv/bin/python -c "import importlib.util as u, starlette, uvicorn, jinja2, python_multipart, kubernetes, \
mlflow.tracking, PIL, pycocotools.coco, tqdm; \
heavy = [m for m in ('torch', 'ultralytics', 'cv2', 'pandas', 'flask', 'matplotlib') if u.find_spec(m)]; \
assert not heavy, f'{heavy} in the console image'; print('starlette', starlette.__version__)" \
 && rm -rf /tmp/pins /tmp/pip-ca.pem
RUN groupadd --gid 1000 visionops \
 && useradd --uid 1000 --gid 1000 --home-dir /home/visionops --create-home --shell /usr/sbin/nologin visionops \
 && mkdir -p /datasets
# /tmp is the writable emptyDir of the chart's pod (read-only root fs; MLflow artifacts are cached there); the
# dataset volume is mounted read-only at /datasets. No network at run time besides the Kubernetes API, MLflow and
# the predictor; no telemetry.
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
WORKDIR /home/visionops
USER 1000:1000
EXPOSE 8090
ENTRYPOINT ["python", "-m", "visionops_console"]
# Listen on every address of the container (the console's own default is 127.0.0.1); the chart passes its own flags.
CMD ["--host=0.0.0.0"]
# The project's code, last: these layers are all a code change rebuilds. The console's package carries its
# templates and static files.
COPY configs/ /app/configs/
COPY visionops/ /app/visionops/
# The CRDs (visionops.crds): the training form's defaults and ranges when the apiserver's schema cannot be read.
COPY manifests/crds/ /app/manifests/crds/
COPY console/visionops_console/ /app/visionops_console/
