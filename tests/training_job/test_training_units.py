"""Pure pieces of the training job: metric names, per-class AP alignment, flags and errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from training_job.cli import build_parser, error_reason, options_from, products_list
from training_job.job import JobError, TrainOptions
from training_job.metrics import epoch_metrics, per_class_ap50
from visionops import config
from visionops.registry import class_metric_key


def test_epoch_metrics_renames_detection_keys_and_keeps_losses():
    validator = {"metrics/precision(B)": 0.5, "metrics/recall(B)": 0.25, "metrics/mAP50(B)": 0.125,
                 "metrics/mAP50-95(B)": 0.0625, "val/box_loss": 1.5, "fitness": 0.1}
    losses = {"train/box_loss": 2.0, "train/cls_loss": math.nan}
    assert epoch_metrics(validator, losses, {"lr/pg0": 0.01}) == {
        "precision": 0.5, "recall": 0.25, "map50": 0.125, "map50_95": 0.0625,
        "val/box_loss": 1.5, "train/box_loss": 2.0, "lr/pg0": 0.01,
    }


def test_per_class_ap50_follows_ap_class_index_not_class_ids():
    names = {0: "a/zero", 1: "a/one", 2: "b/two", 3: "b/three"}
    # class 1 is absent from val: ap50 has 3 entries for classes 0, 2, 3
    assert per_class_ap50([0.9, 0.5, 0.1], [0, 2, 3], names) == {"a/zero": 0.9, "b/two": 0.5, "b/three": 0.1}


def test_per_class_ap50_accepts_a_name_list_and_checks_lengths():
    assert per_class_ap50([0.3], [1], ["x/a", "x/b"]) == {"x/b": 0.3}
    with pytest.raises(ValueError, match="ap50 has 2 values but ap_class_index has 1"):
        per_class_ap50([0.1, 0.2], [0], ["x/a"])
    with pytest.raises(ValueError, match="class id 5 has no name"):
        per_class_ap50([0.1], [5], ["x/a"])


@pytest.mark.parametrize(
    ("name", "key"),
    [("casting/inclusoes", "ap50/casting.inclusoes"), ("lens/flash particle", "ap50/lens.flash particle"),
     ("hemisphere/defect-a", "ap50/hemisphere.defect-a"), ("odd/a+b(c)", "ap50/odd.a_b_c_")],
)
def test_class_metric_key_is_flat_and_mlflow_safe(name, key):
    assert class_metric_key(name) == key


def test_products_list():
    assert products_list(" Casting, Ring ,,") == ["Casting", "Ring"]
    assert products_list("") is None and products_list(None) is None and products_list(" , ") is None


def test_flag_defaults_come_from_configs_training_yaml(monkeypatch):
    for var in ("VISIONOPS_DATASET", "MLFLOW_TRACKING_URI", "VISIONOPS_NAME", "VISIONOPS_EXPERIMENT"):
        monkeypatch.delenv(var, raising=False)
    defaults = config.load("training")
    args = build_parser().parse_args(["--dataset", "/d", "--tracking-uri", "http://m"])
    opts = options_from(args)
    assert (opts.epochs, opts.batch, opts.imgsz, opts.lr0, opts.patience, opts.seed, opts.model) == (
        defaults["epochs"], defaults["batch"], defaults["imgsz"], defaults["lr0"], defaults["patience"],
        defaults["seed"], defaults["model"])
    assert opts.experiment == defaults["experiment"] and opts.identity == {} and opts.products is None


def test_env_fallbacks_and_flags_override_them(monkeypatch):
    monkeypatch.setenv("VISIONOPS_DATASET", "/data/vision")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    monkeypatch.setenv("VISIONOPS_NAMESPACE", "team-a")
    monkeypatch.setenv("VISIONOPS_NAME", "run-1")
    monkeypatch.setenv("VISIONOPS_UID", "1234")
    monkeypatch.setenv("VISIONOPS_PRODUCTS", "Casting,Ring")
    opts = options_from(build_parser().parse_args(["--name", "run-2", "--epochs", "3"]))
    assert opts.dataset == Path("/data/vision") and opts.tracking_uri == "http://mlflow:5000"
    assert opts.identity == {"namespace": "team-a", "name": "run-2", "uid": "1234"}
    assert opts.products == ["Casting", "Ring"] and opts.epochs == 3


def test_missing_inputs_are_named(monkeypatch):
    monkeypatch.delenv("VISIONOPS_DATASET", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(JobError, match="no dataset: pass --dataset DIR or set VISIONOPS_DATASET"):
        options_from(build_parser().parse_args([]))
    with pytest.raises(JobError, match="no MLflow tracking URI"):
        options_from(build_parser().parse_args(["--dataset", "/d"]))


def _opts(**changes) -> TrainOptions:
    base = {"dataset": Path("/d"), "workdir": Path("/w"), "tracking_uri": "http://m", "experiment": "e",
            "model": "yolov8n.yaml", "epochs": 1, "batch": 2, "imgsz": 64, "lr0": 0.01, "patience": 5, "seed": 0,
            "device": "cpu", "workers": 0}
    return TrainOptions(**{**base, **changes})


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"epochs": 0}, "epochs must be >= 1, got 0"), ({"imgsz": 100}, "imgsz must be a multiple of 32"),
     ({"lr0": 2.0}, r"lr0 must be in \(0, 1\)"), ({"model": "yolov8n.pt"}, "model must be an architecture .yaml")],
)
def test_options_are_validated(changes, message):
    _opts().validate()
    with pytest.raises(ValueError, match=message):
        _opts(**changes).validate()


def test_error_reason_is_one_line():
    assert error_reason(JobError("dataset /x is not a directory")) == "dataset /x is not a directory"
    assert error_reason(RuntimeError("line one\n  line two")) == "RuntimeError: line one line two"
    assert error_reason(KeyError()) == "KeyError: KeyError"


@pytest.mark.parametrize(("images", "batch", "nbs"), [
    (60, 8, 8),  # the demo: 8 batches an epoch, every one a step (ultralytics' 64 left one step an epoch)
    (128, 8, 16),  # 16 batches: two per step keeps 8 steps
    (1000, 8, 64),  # real data: ultralytics' nominal batch of 64
    (5000, 16, 64),
    (10, 32, 32),  # a batch larger than the data: one batch, one step
    (0, 8, 8),
    (500, 128, 128),  # a batch over 64 is its own nominal batch
])
def test_nominal_batch_keeps_eight_optimizer_steps_an_epoch(images, batch, nbs):
    from training_job.recipe import nominal_batch

    assert nominal_batch(images, batch) == nbs


def test_nominal_batch_refuses_a_batch_below_one():
    from training_job.recipe import nominal_batch

    with pytest.raises(ValueError, match="batch must be >= 1"):
        nominal_batch(60, 0)


@pytest.mark.parametrize(("fp32", "int8", "max_drop", "precision", "said"), [
    (0.80, 0.91, 0.02, "int8", "INT8 is not lower (allowed drop 0.020)"),
    (0.80, 0.79, 0.02, "int8", "INT8 is 0.010 lower, within the allowed drop of 0.020"),
    (0.80, 0.78, 0.02, "int8", "INT8 is 0.020 lower, within"),  # the edge is inside
    (0.80, 0.70, 0.02, "fp32", "INT8 is 0.100 lower, over the allowed drop of 0.020"),
    (0.80, 0.80, 0.0, "int8", "not lower"),
])
def test_int8_gate_serves_int8_only_within_the_allowed_drop(fp32, int8, max_drop, precision, said):
    from training_job.quantize import decide

    decision = decide(fp32, int8, max_drop)
    assert decision.precision == precision and said in decision.reason
    assert decision.as_dict() == {"precision": precision, "reason": decision.reason, "fp32_score": fp32,
                                  "int8_score": int8, "max_drop": max_drop}


def test_int8_gate_refuses_a_drop_outside_zero_to_one():
    from training_job.quantize import decide

    with pytest.raises(ValueError, match=r"max_drop must be in \[0, 1\]"):
        decide(0.8, 0.8, 1.5)


def test_int8_flags_default_from_the_config_and_switch_off(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow")
    defaults = config.load("training")
    opts = options_from(build_parser().parse_args(["--dataset", "d"]))
    assert (opts.int8, opts.int8_max_drop) == (defaults["int8"], defaults["int8_max_drop"])
    opts = options_from(build_parser().parse_args(["--dataset", "d", "--no-int8", "--int8-max-drop", "0.05"]))
    assert (opts.int8, opts.int8_max_drop) == (False, 0.05)
