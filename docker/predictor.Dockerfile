# VisionOps predictor image: the KServe model server (`python -m predictor`, HTTP + /metrics on 8080)
# serving the registered YOLOv8n detector, fetched from MLflow (--model-uri / MLFLOW_TRACKING_URI) or
# read from /mnt/models (a KServe storageUri).
#
#   docker build -f docker/predictor.Dockerfile -t visionops-predictor:0.1.0 .
#
# BASE_IMAGE: any Debian bookworm image with Python 3.11 (python3 -m venv must work).
# TORCH_INDEX_URL: empty takes torch from PyPI (CUDA build); https://download.pytorch.org/whl/cpu gives a
# CPU-only image.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- builder: resolve the pinned wheels into a virtual environment ------------------------------------
FROM ${BASE_IMAGE} AS builder
ARG TORCH_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml ./
COPY docker/pins.py docker/
RUN python3 -m venv /opt/venv \
 && python3 docker/pins.py predictor > /tmp/requirements.txt \
 && /opt/venv/bin/pip install ${TORCH_INDEX_URL:+--extra-index-url ${TORCH_INDEX_URL}} -r /tmp/requirements.txt
# Headless OpenCV only (see docker/job.Dockerfile): drop ultralytics' GUI build, restore the headless cv2/.
RUN /opt/venv/bin/pip uninstall --yes opencv-python \
 && /opt/venv/bin/pip install --no-deps --force-reinstall "$(grep '^opencv-python-headless' /tmp/requirements.txt)" \
 && if /opt/venv/bin/pip show opencv-python >/dev/null 2>&1; then echo "opencv-python must not remain" >&2; exit 1; fi \
 && /opt/venv/bin/python -c "import cv2; print('cv2', cv2.__version__)"

# ---- runtime -----------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="visionops-predictor" \
      org.opencontainers.image.description="VisionOps defect detector on the KServe model server (V1 + V2)" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --gid 1000 visionops \
 && useradd --uid 1000 --gid 1000 --home-dir /work --no-create-home --shell /usr/sbin/nologin visionops \
 && mkdir -p /work /mnt/models && chown 1000:1000 /work
COPY --from=builder /opt/venv /opt/venv
COPY configs/ /app/configs/
COPY visionops/ /app/visionops/
COPY predictor/ /app/predictor/
# No network at run time besides MLflow: ultralytics stays offline, no telemetry. /work and /tmp are the
# writable emptyDirs of the InferenceService pod (read-only root fs).
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
    DO_NOT_TRACK=1
WORKDIR /work
USER 1000:1000
EXPOSE 8080
ENTRYPOINT ["python", "-m", "predictor"]
