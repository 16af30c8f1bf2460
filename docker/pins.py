"""Print the pinned requirements of one VisionOps image, taken from pyproject.toml (the one list of pins).

Used by the Dockerfiles' builder stages (standard library only, runs on the bare base image):

    python docker/pins.py operator > /tmp/requirements.txt

Each image installs a named subset of ``[project].dependencies``; a name that pyproject.toml does not
pin is an error, so an image can never drift from the versions the test suite ran with. A few names are
pinned through another one (:data:`SAME_VERSION_AS`): ``mlflow-skinny``, the client half of ``mlflow``
that ``mlflow`` itself requires at exactly its own version, takes ``mlflow``'s pin.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"

# What each image needs (distribution names as in pyproject.toml). Shared libraries that would otherwise float (numpy,
# pandas, protobuf, urllib3) are listed so that pip resolves them to the tested pins.
IMAGES: dict[str, tuple[str, ...]] = {
    # Control plane: kopf + the Kubernetes client; MLflow over its REST API (visionops/mlflow_rest.py), so no
    # mlflow, pandas or numpy (tests/chart/test_chart.py checks the imports of the operator and of the visionops
    # modules it uses against this list).
    "operator": ("kopf", "kubernetes", "pyyaml", "requests", "prometheus-client"),
    # The chart's MLflow tracking server (`mlflow server`): the full package at the tested version. The backend
    # store's and the artifact store's drivers (psycopg2, boto3) are build arguments of docker/mlflow.Dockerfile.
    "mlflow": ("mlflow", "flask-wtf", "wtforms", "numpy", "pandas", "protobuf", "pyyaml", "requests"),
    # Training and drift Jobs: everything but the operator framework and the KServe server.
    "job": (
        "torch", "torchvision", "ultralytics", "mlflow", "evidently", "pandas", "numpy", "protobuf", "psutil",
        "onnx", "onnxruntime", "onnxslim", "opencv-python-headless", "pycocotools", "pyyaml", "pillow",
        "requests", "openvino", "nncf",  # the INT8 export (training_job/quantize.py)
    ),
    # Predictor: KServe model server + both inference runtimes (OpenVINO, ONNX Runtime: --runtime) + the MLflow
    # client (no torch, no ultralytics, no OpenCV). kubernetes, pandas and psutil come with kserve,
    # openvino-telemetry with openvino (used only by its model-conversion tools, never by the predictor); listed to
    # get the tested versions.
    "predictor": (
        "kserve", "onnxruntime", "openvino", "openvino-telemetry", "mlflow-skinny", "numpy", "pillow", "protobuf",
        "prometheus-client", "pyyaml", "requests", "pandas", "psutil", "kubernetes",
    ),
    # Console (`python -m visionops_console`): Starlette served by uvicorn, Jinja2 pages, form uploads
    # (python-multipart), the Kubernetes client, the MLflow client (mlflow-skinny: no server, no pandas), the
    # dataset pages' readers (pillow, pycocotools + its numpy; tqdm through visionops.progress). No torch, no
    # ultralytics, no OpenCV, no matplotlib: visionops.analysis imports those only in functions the console never
    # calls.
    "console": (
        "starlette", "uvicorn", "jinja2", "python-multipart", "kubernetes", "urllib3", "mlflow-skinny", "protobuf",
        "pillow", "pycocotools", "numpy", "pyyaml", "requests", "tqdm",
    ),
}

# Distributions pinned at the version pyproject.toml gives another one: {name: pinned name}.
SAME_VERSION_AS: dict[str, str] = {"mlflow-skinny": "mlflow"}

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def normalize(name: str) -> str:
    """PEP 503 normalized distribution name (``PyYAML`` -> ``pyyaml``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def project_pins(pyproject: Path = PYPROJECT) -> dict[str, str]:
    """``{normalized name: requirement line}`` for every ``[project].dependencies`` entry."""
    data = tomllib.loads(pyproject.read_text())
    pins: dict[str, str] = {}
    for requirement in data["project"]["dependencies"]:
        match = _NAME.match(requirement)
        if not match:
            raise ValueError(f"{pyproject}: cannot read a name from dependency {requirement!r}")
        pins[normalize(match.group(1))] = requirement.strip()
    return pins


def derived_pin(name: str, pins: dict[str, str]) -> str | None:
    """The requirement line of a :data:`SAME_VERSION_AS` name (``mlflow-skinny==<mlflow's version>``), or None."""
    source = SAME_VERSION_AS.get(normalize(name))
    if source is None or normalize(source) not in pins:
        return None
    requirement = pins[normalize(source)]
    rest = requirement[_NAME.match(requirement).end():]
    if not rest.lstrip().startswith("=="):
        raise ValueError(f"{name} takes the version of {source}, which must be pinned with ==; got {requirement!r}")
    return f"{name}{rest}"


def image_requirements(image: str, pyproject: Path = PYPROJECT) -> list[str]:
    """The pinned requirement lines of ``image`` (one of :data:`IMAGES`), in the order listed there."""
    if image not in IMAGES:
        raise ValueError(f"unknown image {image!r}; expected one of {', '.join(IMAGES)}")
    pins = project_pins(pyproject)
    lines = {name: pins.get(normalize(name)) or derived_pin(name, pins) for name in IMAGES[image]}
    missing = [name for name, line in lines.items() if line is None]
    if missing:
        raise ValueError(f"image {image!r} needs {', '.join(missing)}, which {pyproject.name} does not pin")
    return list(lines.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", choices=sorted(IMAGES), help="which image's requirements to print")
    parser.add_argument("--pyproject", type=Path, default=PYPROJECT,
                        help="pyproject.toml to read (default: the repo's)")
    args = parser.parse_args(argv)
    try:
        print("\n".join(image_requirements(args.image, args.pyproject)))
    except (OSError, ValueError, KeyError) as exc:
        print(f"pins: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
