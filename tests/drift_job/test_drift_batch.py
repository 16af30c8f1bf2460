"""``visionops.data.drift_batch.simulate``: kinds, selection, metadata, validation, atomic output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from drift_job.features import image_features
from visionops.data.drift_batch import BASIC_KINDS, simulate


def _tree(root: Path, per_folder: int = 5) -> Path:
    """Two products with clashing file names and different extensions, plus a non-image file."""
    rng = np.random.default_rng(0)
    for product, ext in (("Casting", ".png"), ("Screw", ".bmp")):
        folder = root / product / "val"
        folder.mkdir(parents=True)
        (folder / "_annotations.coco.json").write_text("{}")
        for i in range(per_folder):
            pixels = rng.integers(40, 160, size=(24, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"img_{i}{ext}")
    return root


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    return _tree(tmp_path / "vision")


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.float64)


def _pairs(out: Path, source: Path, metadata: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(_pixels(source / f["source"]), _pixels(out / f["file"])) for f in metadata["files"]]


def test_brightness_multiplies_pixels(source: Path, tmp_path: Path):
    out = tmp_path / "batch"
    meta = simulate(source, out, "brightness", 0.5, 1.0)
    assert meta["count"] == 10
    for before, after in _pairs(out, source, meta):
        np.testing.assert_allclose(after, np.clip(np.rint(before * 1.5), 0, 255))


def test_noise_has_the_requested_spread(source: Path, tmp_path: Path):
    out = tmp_path / "batch"
    meta = simulate(source, out, "noise", 0.2, 1.0, seed=1)
    diffs = np.concatenate([(after - before).ravel() for before, after in _pairs(out, source, meta)])
    assert abs(diffs.mean()) < 1.0
    assert diffs.std() == pytest.approx(10.0, rel=0.1)  # std 50 * 0.2, pixels far from 0/255


def test_blur_lowers_sharpness(source: Path, tmp_path: Path):
    out = tmp_path / "batch"
    meta = simulate(source, out, "blur", 0.4, 1.0)
    for before, after in _pairs(out, source, meta):
        assert image_features(after)["sharpness"] < 0.2 * image_features(before)["sharpness"]


def test_mixed_chains_two_kinds_chosen_by_seed(source: Path, tmp_path: Path):
    first = simulate(source, tmp_path / "a", "mixed", 0.3, 0.5, seed=7)
    again = simulate(source, tmp_path / "b", "mixed", 0.3, 0.5, seed=7)
    assert len(first["steps"]) == 2 and len(set(first["steps"])) == 2
    assert set(first["steps"]) <= set(BASIC_KINDS)
    assert first["steps"] == again["steps"] and first["files"] == again["files"]
    for f in first["files"]:
        assert (tmp_path / "a" / f["file"]).read_bytes() == (tmp_path / "b" / f["file"]).read_bytes()
    chosen = {tuple(simulate(source, tmp_path / f"s{seed}", "mixed", 0.3, 0.1, seed=seed)["steps"])
              for seed in range(8)}
    assert len(chosen) > 1


def test_fraction_names_extensions_and_metadata(source: Path, tmp_path: Path):
    out = tmp_path / "batch"
    meta = simulate(source, out, "brightness", 0.5, 0.3, seed=3)
    assert meta["count"] == 3 and meta["source_count"] == 10
    written = sorted(p.name for p in (out / "images").iterdir())
    assert len(written) == 3 and len(set(written)) == 3
    for f in meta["files"]:
        assert Path(f["file"]).suffix == Path(f["source"]).suffix
        assert Path(f["file"]).name == f["source"].replace("/", "_")
    on_disk = json.loads((out / "metadata.json").read_text())
    assert on_disk == meta
    assert {k: meta[k] for k in ("kind", "severity", "fraction", "seed")} == {
        "kind": "brightness", "severity": 0.5, "fraction": 0.3, "seed": 3,
    }
    assert meta["source"] == str(source.resolve()) and meta["created_at"].endswith("+00:00")


def test_same_file_name_in_two_products_stays_unique(tmp_path: Path):
    src = tmp_path / "flat"
    for product in ("A", "B"):
        (src / product).mkdir(parents=True)
        Image.new("RGB", (4, 4), (90, 90, 90)).save(src / product / "x.jpg")
    meta = simulate(src, tmp_path / "batch", "blur", 0.1, 1.0)
    assert sorted(f["file"] for f in meta["files"]) == ["images/A_x.jpg", "images/B_x.jpg"]


def test_previous_batch_is_replaced_but_other_folders_are_refused(source: Path, tmp_path: Path):
    out = tmp_path / "batch"
    simulate(source, out, "brightness", 0.5, 1.0)
    meta = simulate(source, out, "blur", 0.5, 0.2)
    assert len(list((out / "images").iterdir())) == meta["count"] == 2
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="refusing to overwrite"):
        simulate(source, precious, "blur", 0.5, 0.2)
    assert [p.name for p in precious.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "fog"}, "kind"),
        ({"fraction": 0.0}, "fraction"),
        ({"fraction": 1.5}, "fraction"),
        ({"severity": -0.1}, "severity"),
        ({"severity": float("nan")}, "severity"),
    ],
)
def test_bad_arguments_name_the_field_and_range(source: Path, tmp_path: Path, kwargs: dict, field: str):
    args = {"kind": "brightness", "severity": 0.5, "fraction": 0.5, **kwargs}
    with pytest.raises(ValueError, match=field) as err:
        simulate(source, tmp_path / "batch", **args)
    assert any(hint in str(err.value) for hint in ("brightness, noise, blur, mixed", "(0, 1]", ">= 0"))
    assert not (tmp_path / "batch").exists()


def test_no_images_is_a_clear_error(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no pictures")
    with pytest.raises(ValueError, match="no images"):
        simulate(empty, tmp_path / "batch", "brightness", 0.5, 0.5)
    with pytest.raises(ValueError, match="does not exist"):
        simulate(tmp_path / "nowhere", tmp_path / "batch", "brightness", 0.5, 0.5)
    assert not (tmp_path / "batch").exists()


def test_unreadable_image_leaves_nothing_behind(source: Path, tmp_path: Path):
    (source / "Screw" / "val" / "zzz_broken.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="zzz_broken"):
        simulate(source, tmp_path / "out" / "batch", "brightness", 0.5, 1.0)
    assert not (tmp_path / "out").exists()  # not even the parent folder it created for the batch
