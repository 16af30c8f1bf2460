"""Feature maths on hand-made arrays, image collection and the feature table (no Evidently here)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from drift_job.features import FEATURES, collect_images, feature_table, file_features, image_features
from visionops.images import ImageTooLarge


def _save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def test_constant_image_has_no_spread_and_no_gradient():
    feats = image_features(np.full((8, 6, 3), 51, dtype=np.uint8))
    assert feats == pytest.approx({"brightness_mean": 0.2, "brightness_std": 0.0, "contrast": 0.0, "sharpness": 0.0})


def test_black_and_white_halves():
    pixels = np.zeros((5, 4, 3), dtype=np.uint8)
    pixels[:, 2:] = 255  # grey columns 0, 0, 1, 1
    feats = image_features(pixels)
    assert feats["brightness_mean"] == pytest.approx(0.5)
    assert feats["brightness_std"] == pytest.approx(0.5)
    assert feats["contrast"] == pytest.approx(0.5)
    # numpy.gradient along a row: 0 (one-sided), 0.5, 0.5 (central), 0 (one-sided) -> mean of squares 0.125
    assert feats["sharpness"] == pytest.approx(0.125)


def test_pure_red_uses_all_channels_for_brightness_and_luma_for_contrast():
    pixels = np.zeros((4, 4, 3), dtype=np.uint8)
    pixels[..., 0] = 255
    feats = image_features(pixels)
    assert feats["brightness_mean"] == pytest.approx(1 / 3)
    assert feats["brightness_std"] == pytest.approx(math.sqrt(2) / 3)
    assert feats["contrast"] == pytest.approx(0.0, abs=1e-7)  # grey is 0.299 everywhere
    assert feats["sharpness"] == pytest.approx(0.0, abs=1e-12)


def test_vertical_ramp_sharpness_is_squared_slope():
    height = 11
    column = np.linspace(0, 255, height)
    pixels = np.repeat(column[:, None, None], 3, axis=2).repeat(7, axis=1)
    assert image_features(pixels)["sharpness"] == pytest.approx((1 / (height - 1)) ** 2, rel=1e-5)


@pytest.mark.parametrize("strip_pixels", [1, 24 * 3, 24 * 31, 1 << 20])  # a row, 3 rows, all but one, whole
def test_uint8_and_float_inputs_agree_with_the_plain_formulas(strip_pixels: int):
    pixels = np.random.default_rng(3).integers(0, 256, size=(32, 24, 3), dtype=np.uint8)
    rgb = pixels.astype(np.float64) / 255
    grey = rgb @ np.array([0.299, 0.587, 0.114])
    gy, gx = np.gradient(grey)
    expected = {
        "brightness_mean": rgb.mean(),
        "brightness_std": rgb.std(),
        "contrast": grey.std(),
        "sharpness": (gx**2 + gy**2).mean(),
    }
    assert image_features(pixels, strip_pixels) == pytest.approx(expected, rel=1e-5)
    assert image_features(pixels.astype(np.float32), strip_pixels) == pytest.approx(expected, rel=1e-5)


def test_grey_and_rgba_arrays_are_accepted():
    grey = np.random.default_rng(4).integers(0, 256, size=(9, 9), dtype=np.uint8)
    as_rgb = np.repeat(grey[:, :, None], 3, axis=2)
    assert image_features(grey) == pytest.approx(image_features(as_rgb))
    rgba = np.concatenate([as_rgb, np.zeros((9, 9, 1), dtype=np.uint8)], axis=2)
    assert image_features(rgba) == pytest.approx(image_features(as_rgb))


@pytest.mark.parametrize("shape", [(4, 4, 2), (4,), (0, 4, 3), (2, 2, 2, 3)])
def test_bad_shapes_are_rejected(shape):
    with pytest.raises(ValueError, match="HxWx3"):
        image_features(np.zeros(shape, dtype=np.uint8))


def test_single_row_image_has_zero_sharpness():
    assert image_features(np.arange(12, dtype=np.uint8).reshape(1, 4, 3))["sharpness"] == 0.0


@pytest.fixture()
def vision_tree(tmp_path: Path) -> Path:
    root = tmp_path / "vision"
    pixels = np.full((6, 6, 3), 100, dtype=np.uint8)
    for product in ("Casting", "Screw"):
        for split in ("train", "val"):
            _save(root / product / split / "a.png", pixels)
            _save(root / product / split / "b.jpg", pixels)
            (root / product / split / "_annotations.coco.json").write_text("{}")
    _save(root / "Casting" / "train" / "nested" / "c.bmp", pixels)  # not a VISION image: not collected by split
    return root


def test_collect_by_split_and_products(vision_tree: Path):
    train = collect_images(vision_tree, "train")
    assert [p.relative_to(vision_tree).as_posix() for p in train] == [
        "Casting/train/a.png", "Casting/train/b.jpg", "Screw/train/a.png", "Screw/train/b.jpg",
    ]
    only = collect_images(vision_tree, "val", ["Screw"])
    assert [p.relative_to(vision_tree).as_posix() for p in only] == ["Screw/val/a.png", "Screw/val/b.jpg"]


def test_collect_recursive_without_split(vision_tree: Path):
    found = collect_images(vision_tree)
    assert len(found) == 9
    assert all(p.suffix in {".png", ".jpg", ".bmp"} for p in found)


def test_collect_errors_name_the_problem(vision_tree: Path, tmp_path: Path):
    with pytest.raises(ValueError, match=r"\['Wood'\].*available: \['Casting', 'Screw'\]"):
        collect_images(vision_tree, "train", ["Wood"])
    with pytest.raises(FileNotFoundError, match="missing"):
        collect_images(tmp_path / "missing")
    with pytest.raises(ValueError, match="split"):
        collect_images(vision_tree, products=["Casting"])
    with pytest.raises(ValueError, match="VISION layout"):
        collect_images(vision_tree / "Casting", "train")


def test_feature_table_one_row_per_readable_image(tmp_path: Path):
    good = [_save(tmp_path / f"img{i}.png", np.full((5, 5, 3), 50 * i, dtype=np.uint8)) for i in range(3)]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    table = feature_table([*good, broken], max_pixels=10**6)
    assert list(table.columns) == ["image", *FEATURES]
    assert len(table) == 3
    assert table["brightness_mean"].tolist() == pytest.approx([0.0, 50 / 255, 100 / 255])
    assert list(table.attrs["skipped"]) == [str(broken)]


def test_empty_feature_table_keeps_its_columns():
    table = feature_table([], max_pixels=10**6)
    assert list(table.columns) == ["image", *FEATURES] and table.empty


def test_file_features_equal_the_array_features(tmp_path: Path):
    pixels = np.random.default_rng(5).integers(0, 256, size=(40, 100, 3), dtype=np.uint8)
    rgb = _save(tmp_path / "rgb.png", pixels)
    assert file_features(rgb, max_pixels=4000) == pytest.approx(image_features(pixels))
    grey = _save(tmp_path / "grey.png", pixels[:, :, 0])
    assert file_features(grey, max_pixels=4000) == pytest.approx(image_features(pixels[:, :, 0]))
    with Image.open(rgb) as image:
        image.thumbnail((50, 50), Image.Resampling.BILINEAR)
        shrunk = np.asarray(image)
    assert shrunk.shape == (20, 50, 3)
    assert file_features(rgb, max_pixels=4000, max_side=50) == pytest.approx(image_features(shrunk))


def test_file_features_refuse_an_image_over_the_pixel_cap_before_decoding(tmp_path: Path):
    path = _save(tmp_path / "big.png", np.zeros((40, 100, 3)))
    with pytest.raises(ImageTooLarge, match=r"^100x40 pixels is over the limit of 3999 pixels \(max_image_pixels\)$"):
        file_features(path, max_pixels=3999)
