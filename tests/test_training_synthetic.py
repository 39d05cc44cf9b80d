"""The synthetic cloud/shadow generator over real clear backgrounds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from s2mask.bands import BAND_NAMES
from training.data.shards import ShardSource
from training.synthetic import SyntheticConfig, load_backgrounds, synthesize_parts, write_synthetic_dataset

B = {b: i for i, b in enumerate(BAND_NAMES)}


@pytest.fixture(scope="module")
def backgrounds(shared_data):
    return load_backgrounds(shared_data)


@pytest.fixture(scope="module")
def parts(backgrounds):
    rng = np.random.default_rng(7)
    cfg = SyntheticConfig(size=80, p_clear=0.0, p_thin_only=0.0, p_shadow=1.0)
    return [synthesize_parts(backgrounds, rng, cfg) for _ in range(16)]


def test_backgrounds_are_real_13_band_reflectance(backgrounds):
    assert {b.name.split("[")[0] for b in backgrounds} >= {"eolearn_slovenia", "s2cloudless_testscene"}
    for b in backgrounds:
        assert b.image.shape[0] == 13 and b.image.dtype == np.float32
        assert 0.0 < float(np.median(b.image[B["B04"]])) < 0.95  # snow and salt are bright
        assert b.ignore.shape == b.image.shape[1:]
    assert np.median([np.median(b.image[B["B04"]]) for b in backgrounds]) < 0.2
    # bright ground that is not cloud is there, as clear: the salt lake and snow patches
    salt = next(b for b in backgrounds if "T49JGM" in b.name)
    assert not salt.ignore.any() and np.percentile(salt.image[B["B02"]], 90) > 0.2
    assert any(np.median(b.image[B["B02"]]) > 0.3 for b in backgrounds if b.name.startswith("bigearthnet"))
    s2c = next(b for b in backgrounds if b.name == "s2cloudless_testscene")
    assert s2c.image.shape[1] == 428  # the held-out rows are never used as background
    assert 0.2 < s2c.ignore.mean() < 0.9  # real clouds are not trusted as clear


def test_labels_are_classes_or_ignore(parts):
    for p in parts:
        assert p["image"].shape == (13, 80, 80) and p["label"].shape == (80, 80)
        assert set(np.unique(p["label"])) <= {0, 1, 2, 255}
        assert p["image"].min() >= 0.0 and p["image"].max() <= 1.0
    labels = np.stack([p["label"] for p in parts])
    assert (labels == 1).mean() > 0.05 and (labels == 2).mean() > 0.002 and (labels == 0).mean() > 0.2


def test_thick_clouds_are_bright_flat_and_darker_in_swir(parts):
    img = np.concatenate([p["image"][:, p["cloud_alpha"] > 0.95] for p in parts], axis=1)
    assert img.shape[1] > 300
    assert np.median(img[B["B02"]]) > 0.25
    assert np.median(img[B["B11"]] / img[B["B04"]]) < 1.0
    assert np.median(img[B["B12"]] / img[B["B11"]]) < 0.95
    assert np.median(np.abs(img[B["B03"]] / img[B["B04"]] - 1)) < 0.08  # flat in the visible


def test_shadows_darken_nir_and_swir_more_than_blue(parts):
    ratios = []
    for p in parts:
        m = p["label"] == 2
        if m.sum() < 20:
            continue
        r = p["image"][:, m] / np.maximum(p["background"][:, m], 1e-3)
        ratios.append(np.median(r, axis=1))
    r = np.median(np.stack(ratios), axis=0)
    assert r[B["B08"]] < 0.6 and r[B["B11"]] < 0.6
    assert r[B["B08"]] < r[B["B02"]] and r[B["B11"]] < r[B["B02"]]


def test_shadows_never_on_water_and_only_where_visible(parts):
    for p in parts:
        shadow = p["label"] == 2
        assert not (shadow & p["water"]).any()
        assert not (shadow & (p["cloud_alpha"] >= 0.2)).any()
        assert (p["shadow"][shadow] > 0.5).all()


def test_shadows_are_displaced_from_their_clouds(parts):
    moved = [p for p in parts if (p["label"] == 2).sum() > 50]
    assert moved, "no sample with a visible shadow"
    # shadow opacity and cloud opacity are not the same field: the cast is displaced
    for p in moved:
        corr = np.corrcoef(p["shadow"].ravel(), p["cloud_alpha"].ravel())[0, 1]
        assert np.nan_to_num(corr, nan=0.0) < 0.9  # nan: the casting cloud is outside the sample


def test_dataset_round_trip(tmp_path, shared_data):
    out = write_synthetic_dataset(
        tmp_path / "syn",
        shared_data,
        counts={"train": 5, "validation": 2},
        seed=1,
        shard_size=3,
        cfg=SyntheticConfig(size=48),
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["splits"]["train"] == ["train-0000.npz", "train-0001.npz"]
    assert manifest["bands"] == list(BAND_NAMES)
    src = ShardSource(out, split="train", bands=("B04", "B08"))
    assert len(src) <= 5
    x, y = src[0]
    assert x.shape == (2, 48, 48) and x.dtype == np.float32 and y.shape == (48, 48)
    with np.load(out / "train-0000.npz") as d:
        assert d["x"].dtype == np.uint16
        np.testing.assert_allclose(x[1], d["x"][0, B["B08"]] * 1e-4, rtol=1e-6)
    assert not list(out.glob(".*tmp*"))
