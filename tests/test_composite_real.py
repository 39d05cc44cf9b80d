"""Composites driven by a real time series of cloud masks (eo-learn's Slovenia patch, 68 dates)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr
from affine import Affine

from s2mask.composite import composite
from tests.conftest import need

BANDS = ["B02", "B03", "B04"]
RGB_INDEX = [1, 2, 3]  # in the 13-band ESA order of REFERENCE_SCENES


@pytest.fixture(scope="module")
def slovenia(shared_data):
    root = shared_data / "eolearn_slovenia"
    for name in ("REFERENCE_SCENES.npy", "CLM.npy", "CLP.npy", "timestamps_68.json", "bbox.geojson"):
        need(root / name)
    scenes = np.load(root / "REFERENCE_SCENES.npy")[..., RGB_INDEX].transpose(0, 3, 1, 2)  # (5, 3, 101, 100)
    clm = np.load(root / "CLM.npy")[..., 0].astype(np.uint8)  # (68, 101, 100): 0 clear, 1 cloud
    clp = np.load(root / "CLP.npy")[..., 0].astype(np.float32)
    dates = json.loads((root / "timestamps_68.json").read_text())
    ring = np.array(json.loads((root / "bbox.geojson").read_text())["coordinates"][0])
    minx, miny, maxx, maxy = ring[:, 0].min(), ring[:, 1].min(), ring[:, 0].max(), ring[:, 1].max()
    h, w = clm.shape[1:]
    transform = Affine((maxx - minx) / w, 0, minx, 0, -(maxy - miny) / h, maxy)
    return {"scenes": scenes, "clm": clm, "clp": clp, "dates": dates, "transform": transform}


def _georef(arr: xr.DataArray, transform: Affine) -> xr.DataArray:
    h, w = arr.shape[-2:]
    coords = {
        "y": transform.f + transform.e * (np.arange(h) + 0.5),
        "x": transform.c + transform.a * (np.arange(w) + 0.5),
    }
    return arr.assign_coords(coords).rio.write_crs("EPSG:32633").rio.write_transform(transform)


def _series(d, surface_of):
    """One cube per date: the date's clear surface where CLM is clear, bright cloud elsewhere."""
    cubes, masks = [], []
    for t, date in enumerate(d["dates"]):
        surface = surface_of(t)
        values = np.where(d["clm"][t][None] == 0, surface, 0.75).astype(np.float32)
        cube = xr.DataArray(values, dims=("band", "y", "x"), coords={"band": BANDS}).chunk({"y": 64, "x": 64})
        cube.attrs.update(product_id=f"eolearn_{t}", datetime=date)
        cubes.append(_georef(cube, d["transform"]))
        masks.append(_georef(xr.DataArray(d["clm"][t], dims=("y", "x")), d["transform"]))
    return cubes, masks


def test_median_over_real_masks_recovers_surface_and_counts(slovenia):
    d = slovenia
    truth = d["scenes"][0]
    cubes, masks = _series(d, lambda t: truth)
    out = composite(cubes, masks, method="median", chunks=64).compute()
    count = (d["clm"] == 0).sum(axis=0)
    assert count.min() >= 0 and count.max() <= 68 and 0 < count.mean() < 68
    np.testing.assert_array_equal(out["count"].values, count)
    has = count > 0
    np.testing.assert_array_equal(out["reflectance"].values[:, has], truth[:, has])
    assert np.isnan(out["reflectance"].values[:, ~has]).all()
    assert len(out.attrs["dates"]) == 68 and out.attrs["dates"][0].startswith("2015-07-11")


def test_the_chosen_dates_decide_what_counts(slovenia):
    d = slovenia
    truth = d["scenes"][1]
    cubes, masks = _series(d, lambda t: truth)
    cloudy = d["clm"].mean(axis=(1, 2))
    partly = [i for i in range(len(cubes)) if 0.5 < cloudy[i] < 1]  # mostly but not fully cloudy dates
    assert len(partly) >= 5
    out = composite([cubes[i] for i in partly], [masks[i] for i in partly], chunks=64).compute()
    count = (d["clm"][partly] == 0).sum(axis=0)
    np.testing.assert_array_equal(out["count"].values, count)
    assert (count == 0).any()  # these dates leave some pixels without any clear view: they are nodata
    assert np.isnan(out["reflectance"].values[:, count == 0]).all()


def test_best_pixel_follows_cloud_probability_and_target_date(slovenia):
    d = slovenia
    cubes, masks = _series(d, lambda t: d["scenes"][t % 5] + np.float32(t * 1e-4))
    clear = d["clm"] == 0
    probs = [
        _georef(
            xr.DataArray(np.stack([1 - p, p, np.zeros_like(p)]), dims=("class", "y", "x")), d["transform"]
        )
        for p in d["clp"]
    ]
    out = composite(cubes, masks, probabilities=probs, method="best-pixel", chunks=64).compute()
    expected = np.argmin(np.where(clear, 1 - (1 - d["clp"]), np.inf), axis=0)
    has = clear.any(axis=0)
    np.testing.assert_array_equal(out["source_index"].values[has], expected[has])
    assert (out["source_index"].values[~has] == 255).all()
    stack = np.stack([c.values for c in cubes])  # (68, 3, h, w)
    chosen = np.take_along_axis(stack, expected[None, None], axis=0)[0]
    np.testing.assert_array_equal(out["reflectance"].values[:, has], chosen[:, has])

    # masks only: every clear observation ties, so the clear date closest to the target wins
    target = np.datetime64("2016-08-01")
    out = composite(cubes, masks, method="best-pixel", target_date="2016-08-01", chunks=64).compute()
    when = np.array([np.datetime64(s) for s in d["dates"]])
    distance = np.abs((when - target).astype("timedelta64[s]").astype(np.int64))
    closest = np.argmin(np.where(clear, distance[:, None, None], np.iinfo(np.int64).max), axis=0)
    np.testing.assert_array_equal(out["source_index"].values[has], closest[has])
