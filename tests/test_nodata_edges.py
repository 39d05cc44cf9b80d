"""Nodata is not dark ground: clear pixels beside a nodata corner are classed as far from it.

Real clear pixels (Aberystwyth, L2A; DSen2 T33UUB, L1C) are written with a nodata corner
as a GeoTIFF, a SAFE product and a STAC item, read back by s2mask's own readers and
masked with the shipped models.  Within 8 px of nodata the share of each non-clear class
may be at most twice its share beyond 40 px, or under 1 % absolute.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pystac
import pytest
import torch
from rasterio.transform import from_origin
from scipy import ndimage

import s2mask
from s2mask.bands import BAND_NAMES
from s2mask.model.normalize import fill_nodata, normalize
from s2mask.testing.products import write_geotiff, write_safe

NEAR, FAR = 8, 40
SIZE = 192


def _clear_scene(shared_data: Path, which: str, size: int = SIZE) -> tuple[np.ndarray, str]:
    """(13, size, size) real clear reflectance (ESA order) and its level."""
    from training.real_data import real_scenes
    from training.synthetic import _esa13

    folder, (r, c) = {"aber": ("rsgislib_aberystwyth", (450, 650)), "t33uub": ("dsen2_l1c", (100, 100))}[
        which
    ]
    scenes = [s for s in real_scenes(shared_data, only=(folder,)) if "T49JGM" not in s.name]
    if not scenes:
        pytest.skip(f"{folder} is absent")
    sc = scenes[0]
    img = _esa13(sc.bands)[:, r : r + size, c : c + size]  # farmland, woods, roads; no town or beach
    return np.clip(np.nan_to_num(img), 1e-4, 1.0), sc.level


def _corner(size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return (yy + xx) < 0.6 * size  # a diagonal swath edge


def _assert_edge_like_interior(mask: np.ndarray, nodata: np.ndarray, what: str) -> None:
    assert (mask[nodata] == 255).all(), f"{what}: nodata pixels must be 255"
    dist = ndimage.distance_transform_edt(~nodata)
    near, far = (dist > 0) & (dist <= NEAR), dist > FAR
    assert near.sum() > 500 and far.sum() > 500
    for k, name in ((1, "cloud"), (2, "shadow")):
        s_near, s_far = float((mask[near] == k).mean()), float((mask[far] == k).mean())
        assert s_near <= max(2 * s_far, 0.01), (
            f"{what}: {name} share {s_near:.3f} within {NEAR} px of nodata vs {s_far:.3f} beyond {FAR} px"
        )


def _mask(cube, model) -> np.ndarray:
    return np.asarray(s2mask.to_mask(s2mask.predict(cube, model, batch_size=4)).values)


def _assert_unchanged_by_nodata(with_nodata: np.ndarray, without: np.ndarray, nodata: np.ndarray) -> None:
    """Pixels beside nodata keep the class they have when the whole scene is valid."""
    dist = ndimage.distance_transform_edt(~nodata)
    near = (dist > 0) & (dist <= NEAR)
    changed = float((with_nodata[near] != without[near]).mean())
    assert changed <= 0.02, f"{changed:.3f} of the pixels within {NEAR} px of nodata change class"


@pytest.mark.parametrize("which", ["aber", "t33uub"])
@pytest.mark.parametrize("model_name", ["s2-9", "rgbn"])
def test_geotiff_nodata_corner(shared_data: Path, tmp_path: Path, which: str, model_name: str) -> None:
    refl, _ = _clear_scene(shared_data, which)
    nodata = _corner(SIZE)
    path = write_geotiff(
        tmp_path / "scene.tif", refl, BAND_NAMES, "EPSG:32630", from_origin(500000, 600000, 10, 10),
        nodata_mask=nodata,
    )  # fmt: skip
    whole = write_geotiff(
        tmp_path / "whole.tif", refl, BAND_NAMES, "EPSG:32630", from_origin(500000, 600000, 10, 10)
    )
    model = s2mask.load_model(model_name)
    cube = s2mask.open_product(path, bands=model.bands)
    assert np.isnan(cube.values[:, nodata]).all()
    mask = _mask(cube, model)
    _assert_edge_like_interior(mask, nodata, f"GeoTIFF {which} {model_name}")
    _assert_unchanged_by_nodata(mask, _mask(s2mask.open_product(whole, bands=model.bands), model), nodata)


@pytest.mark.parametrize("which", ["aber", "t33uub"])
def test_safe_nodata_corner(shared_data: Path, tmp_path: Path, which: str) -> None:
    refl, level = _clear_scene(shared_data, which)
    nodata = _corner(SIZE)
    safe = write_safe(tmp_path, refl, level=level, nodata_mask=nodata)
    model = s2mask.load_model("s2-9")
    cube = s2mask.open_product(safe, bands=model.bands)
    _assert_edge_like_interior(_mask(cube, model), nodata, f"SAFE {which}")


def test_stac_nodata_corner(shared_data: Path, tmp_path: Path) -> None:
    from s2mask.io.stac import open_stac_item
    from tests.test_stac_run import SIZE as STAC_SIZE
    from tests.test_stac_run import make_item

    refl, _ = _clear_scene(shared_data, "aber", STAC_SIZE)
    nodata = _corner(STAC_SIZE)
    raw, _ = make_item(shared_data, tmp_path, "c1-l2a", "edge", refl=refl, nodata=nodata)
    model = s2mask.load_model("s2-9")
    cube = open_stac_item(pystac.Item.from_dict(raw), bands=model.bands)
    mask = _mask(cube, model)
    assert (mask[nodata] == 255).all()
    dist = ndimage.distance_transform_edt(~nodata)
    near, far = (dist > 0) & (dist <= NEAR), dist > 30  # a 96 px item has little interior beyond 40 px
    for k in (1, 2):
        s_near, s_far = float((mask[near] == k).mean()), float((mask[far] == k).mean())
        assert s_near <= max(2 * s_far, 0.01), (k, s_near, s_far)


def test_fill_nodata_takes_the_nearest_valid_pixel() -> None:
    x = np.full((2, 5, 6), np.nan, np.float32)
    x[:, :, :2] = np.array([0.1, 0.2], np.float32)[:, None, None] * np.arange(1, 6)[None, :, None]
    out = fill_nodata(x)
    assert not np.isnan(out).any() and np.isnan(x).any()  # the input is not modified
    # every filled pixel copies column 1 of its own row, the nearest valid pixel
    np.testing.assert_array_equal(out[:, :, 2:], np.repeat(out[:, :, 1:2], 4, axis=2))
    np.testing.assert_allclose(out[0, :, 5], 0.1 * np.arange(1, 6), rtol=1e-6)
    assert (fill_nodata(np.full((3, 4, 4), np.nan)) == 0).all()
    clean = np.random.default_rng(0).random((2, 3, 8, 8), dtype=np.float32)
    assert fill_nodata(clean) is not None and np.array_equal(fill_nodata(clean), clean)


def test_training_and_inference_fill_alike() -> None:
    """normalize() on a torch batch (training) equals the numpy path (inference)."""
    rng = np.random.default_rng(1)
    x = rng.random((2, 4, 16, 16), dtype=np.float32)
    x[0, :, :5, :5] = np.nan
    x[1, :, 10:, :] = np.nan
    t = normalize(torch.from_numpy(x.copy())).numpy()
    n = normalize(x)
    np.testing.assert_array_equal(t, n)
    assert not np.isnan(n).any() and (n[0, :, :5, :5] > 0).all()  # not black
