# VisionOps MLflow image: the tracking server + model registry the Helm chart runs (`mlflow server`, the chart's
# mlflow.image), with the full mlflow package at the version the project pins, and the drivers of the stores the
# chart supports: SQLite (Python's own), PostgreSQL (psycopg2) and S3/MinIO artifacts (boto3). Of the project's code
# one file: visionops/mlflow_accounts.py (standard library + mlflow), which sets up the accounts of MLflow's sign-in.
#
#   docker build -f docker/mlflow.Dockerfile -t visionops-mlflow:0.1.0 .
#   docker run --rm -p 5000:5000 visionops-mlflow:0.1.0     # SQLite + artifacts under /mlflow (not kept)
#
# Dependencies in one layer. BASE_IMAGE: any Debian bookworm image with Python 3.11 (python3 -m venv must work).
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- pins: this image's requirements from pyproject.toml. The main stage copies only the resulting file, so
# its dependency layer stays cached while pyproject.toml changes elsewhere (docker compares file contents).
FROM ${BASE_IMAGE} AS pins
COPY pyproject.toml docker/pins.py /pins/
RUN python3 /pins/pins.py mlflow --pyproject /pins/pyproject.toml > /pins/requirements.txt

# ---- the image --------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
# Drivers only `mlflow server` needs, which the project itself never imports (so pyproject.toml does not pin
# them): S3/MinIO artifact storage and a PostgreSQL backend store. psycopg (3) is SQLAlchemy 2.1's driver for a
# plain postgresql:// URI; psycopg2 serves postgresql+psycopg2:// URIs written for SQLAlchemy 2.0.
ARG MLFLOW_SERVER_EXTRAS="boto3==1.44.8 psycopg==3.3.9 psycopg-binary==3.3.9 psycopg2-binary==2.9.13"
LABEL org.opencontainers.image.title="visionops-mlflow" \
      org.opencontainers.image.description="MLflow tracking server and model registry for VisionOps" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
# The pinned wheels in a virtual environment, in one layer, with no pip cache and no build files left behind.
# The import check fails the build if the server or a store driver cannot load.
COPY --from=pins /pins/requirements.txt /tmp/pins/
# PIP_CA_URL (build only): where egress goes through a TLS-intercepting proxy, hack/images.sh serves the
# build host's CA bundle on loopback; pip uses it inside this one RUN, which deletes it: no layer keeps it,
# and the image trusts only its own CAs at run time.
ARG PIP_CA_URL=
RUN export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1 \
 && if [ -n "$PIP_CA_URL" ]; then python3 -c "import sys, urllib.request as r; r.urlretrieve(sys.argv[1], '/tmp/pip-ca.pem')" \
      "$PIP_CA_URL" && export PIP_CERT=/tmp/pip-ca.pem; fi \
 && python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install -r /tmp/pins/requirements.txt ${MLFLOW_SERVER_EXTRAS} \
 && /opt/venv/bin/python -c "import importlib.util as u, mlflow, mlflow.server, sqlalchemy, alembic, boto3, psycopg2; \
assert not [m for m in ('torch', 'ultralytics') if u.find_spec(m)], 'heavy packages in the image'; \
[sqlalchemy.create_engine(f'{s}://u:p@h/db') for s in ('postgresql', 'postgresql+psycopg2')]; \
print('mlflow', mlflow.__version__)" \
 && rm -rf /tmp/pins /tmp/pip-ca.pem
RUN groupadd --gid 1000 visionops \
 && useradd --uid 1000 --gid 1000 --home-dir /home/visionops --create-home --shell /usr/sbin/nologin visionops \
 && mkdir -p /mlflow && chown 1000:1000 /mlflow
# The chart mounts /mlflow (its volume: SQLite database, artifacts) and /tmp (emptyDir) on a read-only root fs.
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=true \
    ITERATIVE_DO_NOT_TRACK=1 \
    HF_HUB_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    YOLO_OFFLINE=1 \
    HOME=/home/visionops
# The chart's `accounts` init container runs it before the server (mlflow.auth, docs/security.md).
COPY visionops/mlflow_accounts.py /opt/visionops/mlflow_accounts.py
WORKDIR /mlflow
USER 1000:1000
EXPOSE 5000
# The chart runs `mlflow server` with its own arguments (templates/mlflow/deployment.yaml); these are for docker run.
ENTRYPOINT ["mlflow", "server"]
CMD ["--host=0.0.0.0", "--port=5000", "--backend-store-uri=sqlite:////mlflow/mlflow.db", \
     "--artifacts-destination=/mlflow/artifacts"]
