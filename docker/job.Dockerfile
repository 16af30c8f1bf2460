# VisionOps Job image: the training Job (`python -m training_job`) and the drift Job (`python -m drift_job`)
# the operator starts (it sets the command), and the `visionops` CLI as the default entry point, e.g.
#
#   docker build -f docker/job.Dockerfile -t visionops-job:0.1.0 .
#   docker run --rm -v "$PWD/data:/data" visionops-job:0.1.0 data synth --out /data/synthetic
#
# One stage, dependencies first and the project's code last: a code change rebuilds only the small COPY
# layers on top of the cached ~6.5 GB dependency layer (and a node that has the old image fetches only them).
# BASE_IMAGE: any Debian bookworm image with Python 3.11 (python3 -m venv must work).
# TORCH_INDEX_URL: empty takes torch from PyPI (CUDA build: runs on CPU and on NVIDIA GPUs, ~5 GB more);
# https://download.pytorch.org/whl/cpu gives a CPU-only image.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- pins: this image's requirements from pyproject.toml. The main stage copies only the resulting file, so
# its dependency layer stays cached while pyproject.toml changes elsewhere (docker compares file contents).
FROM ${BASE_IMAGE} AS pins
COPY pyproject.toml docker/pins.py /pins/
RUN python3 /pins/pins.py job --pyproject /pins/pyproject.toml > /pins/requirements.txt

# ---- the image --------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
ARG TORCH_INDEX_URL=""
LABEL org.opencontainers.image.title="visionops-job" \
      org.opencontainers.image.description="VisionOps training and drift Jobs (ultralytics, MLflow, Evidently)" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
# The pinned wheels in a virtual environment. ultralytics depends on opencv-python (GUI build, needs
# libGL/libX11), which overwrites the headless build's cv2/ folder: remove it, then reinstall the headless
# build so cv2/ is whole again. All in one layer, with no pip cache and no build files left behind.
COPY --from=pins /pins/requirements.txt /tmp/pins/
# PIP_CA_URL (build only): where egress goes through a TLS-intercepting proxy, hack/images.sh serves the
# build host's CA bundle on loopback; pip uses it inside this one RUN, which deletes it: no layer keeps it,
# and the image trusts only its own CAs at run time.
ARG PIP_CA_URL=
RUN export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 \
 && if [ -n "$PIP_CA_URL" ]; then python3 -c "import sys, urllib.request as r; r.urlretrieve(sys.argv[1], '/tmp/pip-ca.pem')" \
      "$PIP_CA_URL" && export PIP_CERT=/tmp/pip-ca.pem; fi \
 && python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install ${TORCH_INDEX_URL:+--extra-index-url ${TORCH_INDEX_URL}} -r /tmp/pins/requirements.txt \
 && /opt/venv/bin/pip uninstall --yes opencv-python \
 && /opt/venv/bin/pip install --no-deps --force-reinstall "$(grep '^opencv-python-headless' /tmp/pins/requirements.txt)" \
 && if /opt/venv/bin/pip show opencv-python >/dev/null 2>&1; then echo "opencv-python must not remain" >&2; exit 1; fi \
 && /opt/venv/bin/python -c "import cv2; print('cv2', cv2.__version__)" \
 && rm -rf /tmp/pins /tmp/pip-ca.pem
RUN groupadd --gid 1000 visionops \
 && useradd --uid 1000 --gid 1000 --home-dir /work --no-create-home --shell /usr/sbin/nologin visionops \
 && mkdir -p /work /data && chown 1000:1000 /work
# No network at run time: ultralytics never downloads fonts/weights or pip-installs, MLflow sends no telemetry.
# HOME, YOLO_CONFIG_DIR and MPLCONFIGDIR point at /work, the writable emptyDir of a Job pod (read-only root fs).
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VISIONOPS_CONFIG_DIR=/app/configs \
    HOME=/work \
    YOLO_CONFIG_DIR=/work/.yolo \
    MPLCONFIGDIR=/work/.matplotlib \
    YOLO_OFFLINE=1 \
    YOLO_AUTOINSTALL=false \
    YOLO_VERBOSE=false \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=true \
    ITERATIVE_DO_NOT_TRACK=1 \
    HF_HUB_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1
COPY configs/ /app/configs/
COPY visionops/ /app/visionops/
COPY training_job/ /app/training_job/
COPY drift_job/ /app/drift_job/
WORKDIR /work
USER 1000:1000
ENTRYPOINT ["python", "-m", "visionops.cli"]
CMD ["--help"]
