"""``docker/pins.py``: each image's requirement lines come from pyproject.toml's pins (no network)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("pins", REPO / "docker" / "pins.py")
pins = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pins)


def _pyproject(tmp_path: Path, *dependencies: str) -> Path:
    path = tmp_path / "pyproject.toml"
    path.write_text("[project]\nname = 'x'\ndependencies = [\n" + "".join(f"  {d!r},\n" for d in dependencies) + "]\n")
    return path


def test_every_image_resolves_from_the_repo_pyproject():
    project = pins.project_pins()
    for image in pins.IMAGES:
        lines = pins.image_requirements(image)
        assert len(lines) == len(pins.IMAGES[image]) and all("==" in line for line in lines), image
        assert all(line in project.values() or line.startswith("mlflow-skinny==") for line in lines), image


def test_the_predictor_image_has_no_torch_and_the_mlflow_client_at_mlflows_version():
    lines = pins.image_requirements("predictor")
    names = {pins.normalize(line.split("==")[0]) for line in lines}
    assert not names & {"torch", "torchvision", "ultralytics", "opencv-python-headless", "mlflow"}
    assert {"kserve", "onnxruntime", "openvino", "mlflow-skinny"} <= names  # both runtimes of --runtime
    mlflow_version = pins.project_pins()["mlflow"].split("==")[1]
    assert f"mlflow-skinny=={mlflow_version}" in lines


def _names(image: str) -> set[str]:
    return {pins.normalize(line.split("==")[0]) for line in pins.image_requirements(image)}


def test_the_operator_image_has_no_mlflow_and_the_server_has_its_own_image():
    # The operator reads and writes MLflow over its REST API (visionops/mlflow_rest.py).
    assert _names("operator") == {"kopf", "kubernetes", "pyyaml", "requests", "prometheus-client"}
    # The chart's tracking server: the full mlflow at the project's pin, with the shared libraries at theirs.
    lines = pins.image_requirements("mlflow")
    assert pins.project_pins()["mlflow"] in lines
    assert {"numpy", "pandas", "protobuf"} <= _names("mlflow")
    assert not _names("mlflow") & {"torch", "ultralytics", "kserve", "kopf", "evidently"}


def test_the_console_image_has_the_mlflow_client_and_no_ml_stack():
    names = _names("console")
    assert {"starlette", "uvicorn", "jinja2", "python-multipart", "kubernetes", "pillow", "pycocotools"} <= names
    assert not names & {"mlflow", "pandas", "torch", "torchvision", "ultralytics", "opencv-python-headless",
                        "kserve", "kopf", "evidently"}
    mlflow_version = pins.project_pins()["mlflow"].split("==")[1]
    assert f"mlflow-skinny=={mlflow_version}" in pins.image_requirements("console")


def test_same_version_as_follows_the_source_pin(tmp_path: Path):
    pyproject = _pyproject(tmp_path, "mlflow==1.2.3", "kserve==0.1")
    assert pins.derived_pin("mlflow-skinny", pins.project_pins(pyproject)) == "mlflow-skinny==1.2.3"
    assert pins.derived_pin("kserve", pins.project_pins(pyproject)) is None  # not a derived name
    with pytest.raises(ValueError, match=r"mlflow-skinny takes the version of mlflow, which must be pinned with ==; "
                                         r"got 'mlflow>=1.2'"):
        pins.derived_pin("mlflow-skinny", pins.project_pins(_pyproject(tmp_path, "mlflow>=1.2")))


def test_a_name_pyproject_does_not_pin_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture):
    monkeypatch.setitem(pins.IMAGES, "predictor", ("kserve", "mlflow-skinny"))
    pyproject = _pyproject(tmp_path, "kserve==0.1")  # no mlflow pin to take the version from
    with pytest.raises(ValueError, match=r"image .predictor. needs mlflow-skinny, which pyproject\.toml does not pin"):
        pins.image_requirements("predictor", pyproject)
    assert pins.main(["predictor", "--pyproject", str(pyproject)]) == 1
    assert "does not pin" in capsys.readouterr().err
    assert pins.main(["predictor", "--pyproject", str(_pyproject(tmp_path, "kserve==0.1", "mlflow==2.0"))]) == 0
    assert capsys.readouterr().out.split() == ["kserve==0.1", "mlflow-skinny==2.0"]
