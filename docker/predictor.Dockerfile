# VisionOps predictor image: the KServe model server (`python -m predictor`, HTTP + /metrics on 8080)
# running the registered YOLOv8n detector's ONNX export (best.onnx) with ONNX Runtime on the CPU, fetched
# from MLflow (--model-uri / MLFLOW_TRACKING_URI) or read from /mnt/models (a KServe storageUri).
# No torch, no ultralytics, no OpenCV: about 400 MB of Python packages on the base image.
#
#   docker build -f docker/predictor.Dockerfile -t visionops-predictor:0.1.0 .
#
# Dependencies first and the project's code last: a code change rebuilds only the small COPY layers on top
# of the cached dependency layer (and a node that has the old image fetches only them).
# BASE_IMAGE: any Debian bookworm image with Python 3.11 (python3 -m venv must work).
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- pins: this image's requirements from pyproject.toml (a text file, nothing else leaves this stage).
# The image copies only that file, so its dependency layer stays cached while pyproject.toml changes
# elsewhere (docker compares file contents).
FROM ${BASE_IMAGE} AS pins
COPY pyproject.toml docker/pins.py /pins/
RUN python3 /pins/pins.py predictor --pyproject /pins/pyproject.toml > /pins/requirements.txt

# ---- the image --------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="visionops-predictor" \
      org.opencontainers.image.description="VisionOps defect detector (ONNX Runtime) on the KServe model server (V1 + V2)" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
# The pinned wheels in a virtual environment, in one layer, with no pip cache and no build files left behind.
# The import check fails the build if torch or ultralytics ever come back through a dependency.
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
 && /opt/venv/bin/python -c "import importlib.util as u, kserve, mlflow, onnxruntime; \
assert not [m for m in ('torch', 'ultralytics', 'cv2') if u.find_spec(m)], 'heavy packages in the image'; \
print('onnxruntime', onnxruntime.__version__, 'mlflow', mlflow.__version__)" \
 && rm -rf /tmp/pins /tmp/pip-ca.pem
RUN groupadd --gid 1000 visionops \
 && useradd --uid 1000 --gid 1000 --home-dir /work --no-create-home --shell /usr/sbin/nologin visionops \
 && mkdir -p /work /mnt/models && chown 1000:1000 /work
# /work and /tmp are the writable emptyDirs of the InferenceService pod (read-only root fs); no network at
# run time besides MLflow, no telemetry. VISIONOPS_INTRA_OP_THREADS (unset: one ONNX Runtime thread per
# core of the node) is best set to the pod's CPU limit.
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VISIONOPS_CONFIG_DIR=/app/configs \
    HOME=/work \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=true \
    ITERATIVE_DO_NOT_TRACK=1 \
    HF_HUB_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    YOLO_OFFLINE=1
WORKDIR /work
USER 1000:1000
EXPOSE 8080
ENTRYPOINT ["python", "-m", "predictor"]
# The project's code, last: these layers are all a code change rebuilds.
COPY configs/ /app/configs/
COPY visionops/ /app/visionops/
COPY predictor/ /app/predictor/
