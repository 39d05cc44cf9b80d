"""The composite core on synthetic time series with known clear values."""

from __future__ import annotations

import threading

import dask
import dask.array as da
import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr

from s2mask.composite import SOURCE_NODATA, composite, to_uint16
from s2mask.errors import BandMismatchError, InvalidParameterError

BANDS = ["B02", "B03", "B04"]
T, H, W = 6, 40, 50


def _coords(h=H, w=W, res=10.0, x0=400_000.0, y0=5_000_000.0):
    return {"y": y0 - res * (np.arange(h) + 0.5), "x": x0 + res * (np.arange(w) + 0.5)}


def _cube(values: np.ndarray, chunks=(3, 16, 24), **kw) -> xr.DataArray:
    arr = da.from_array(values.astype(np.float32), chunks=chunks)
    cube = xr.DataArray(
        arr, dims=("band", "y", "x"), coords={"band": BANDS[: values.shape[0]], **_coords(**kw)}
    )
    return cube.rio.write_crs("EPSG:32633")


def _mask(values: np.ndarray, **kw) -> xr.DataArray:
    m = xr.DataArray(
        da.from_array(values.astype(np.uint8), chunks=(16, 24)), dims=("y", "x"), coords=_coords(**kw)
    )
    return m.rio.write_crs("EPSG:32633")


@pytest.fixture(scope="module")
def series():
    """Known clear surface; clouds read bright, shadows dark; a strip with no clear observation."""
    rng = np.random.default_rng(42)
    truth = rng.uniform(0.01, 0.6, (3, H, W)).astype(np.float32)
    classes = rng.choice(np.array([0, 1, 2, 255], np.uint8), (T, H, W), p=[0.4, 0.35, 0.2, 0.05])
    classes[:, :, :3] = 1  # never clear
    cubes, masks = [], []
    for t in range(T):
        v = np.where(classes[t] == 0, truth, np.where(classes[t] == 1, 0.9, 0.02)).astype(np.float32)
        v[:, classes[t] == 255] = np.nan
        cubes.append(_cube(v))
        masks.append(_mask(classes[t]))
    return truth, classes, cubes, masks


@pytest.mark.parametrize("method", ["median", "mean", "best-pixel"])
def test_composite_reproduces_clear_values_and_counts(series, method):
    truth, classes, cubes, masks = series
    result = composite(cubes, masks, method=method, chunks=16)
    assert isinstance(result["reflectance"].data, da.Array)  # lazy
    out = result.compute()
    count = (classes == 0).sum(axis=0)
    has = count > 0
    assert (~has).sum() >= 3 * H and has.sum() > 0.9 * (W - 3) * H
    np.testing.assert_array_equal(out["reflectance"].values[:, has], truth[:, has])
    assert np.isnan(out["reflectance"].values[:, ~has]).all()
    np.testing.assert_array_equal(out["count"].values, count)
    assert out["count"].dtype == np.uint16 and out["reflectance"].dtype == np.float32
    assert out.rio.crs.to_epsg() == 32633
    assert out.rio.transform() == cubes[0].rio.transform()
    assert list(out["band"].values) == BANDS
    assert out.attrs["method"] == method


def test_best_pixel_source_index(series):
    truth, classes, cubes, masks = series
    out = composite(cubes, masks, method="best-pixel").compute()
    src = out["source_index"]
    assert src.dtype == np.uint8 and src.attrs["nodata"] == 255
    clear = classes == 0
    first_clear = np.where(clear.any(axis=0), np.argmax(clear, axis=0), 255)
    np.testing.assert_array_equal(src.values, first_clear)  # no scores, no target date: first clear scene


def test_result_does_not_depend_on_chunks(series):
    _, _, cubes, masks = series
    a = composite(cubes, masks, chunks=16).compute()
    b = composite(cubes, masks, chunks=64).compute()
    xr.testing.assert_identical(a, b)


def test_one_output_block_reads_one_block_of_each_scene():
    """Memory is chunk area x scenes: an output block only generates the matching input blocks."""
    seen: list[tuple[int, int, int]] = []
    lock = threading.Lock()

    def block(t, block_info=None):
        (y0, y1), (x0, x1) = block_info[None]["array-location"][1:]
        with lock:
            seen.append((t, y0, x0))
        return np.full((3, y1 - y0, x1 - x0), 0.1 * (t + 1), np.float32)

    cubes = []
    for t in range(4):
        arr = da.map_blocks(block, t, chunks=((3,), (32, 32, 16), (32, 32)), dtype=np.float32)
        cubes.append(xr.DataArray(arr, dims=("band", "y", "x"), coords={"band": BANDS, **_coords(80, 64)}))
    cubes = [c.rio.write_crs("EPSG:32633") for c in cubes]
    masks = [_mask(np.zeros((80, 64)), h=80, w=64) for _ in range(4)]
    result = composite(cubes, masks, chunks=32)
    with dask.config.set(scheduler="sync"):
        part = result["reflectance"][:, 32:64, 0:32].values
    assert sorted(seen) == [(t, 32, 0) for t in range(4)]
    np.testing.assert_allclose(part, 0.25)  # median of 0.1, 0.2, 0.3, 0.4


def test_a_nan_band_makes_the_observation_not_clear():
    v = np.full((3, 4, 4), 0.5, np.float32)
    w = np.full((3, 4, 4), 0.2, np.float32)
    w[1, 0, 0] = np.nan
    out = composite(
        [_cube(v, h=4, w=4), _cube(w, h=4, w=4)], [_mask(np.zeros((4, 4)), h=4, w=4)] * 2
    ).compute()
    assert out["count"].values[0, 0] == 1 and out["count"].values[1, 1] == 2
    np.testing.assert_array_equal(out["reflectance"].values[:, 0, 0], 0.5)


def test_buffer_drops_clear_pixels_next_to_clouds():
    v = [np.full((3, 9, 9), x, np.float32) for x in (0.1, 0.3)]
    m0 = np.zeros((9, 9))
    m0[4, 4] = 1
    masks = [_mask(m0, h=9, w=9), _mask(np.zeros((9, 9)), h=9, w=9)]
    cubes = [_cube(x, h=9, w=9) for x in v]
    plain = composite(cubes, masks).compute()
    grown = composite(cubes, masks, buffer=2).compute()
    assert plain["count"].values[4, 6] == 2 and plain["count"].values[4, 4] == 1
    assert grown["count"].values[4, 6] == 1 and grown["count"].values[4, 7] == 2
    assert grown["reflectance"].values[0, 4, 6] == np.float32(0.3)
    assert grown.attrs["buffer"] == 2


def _probs(p_cloud: np.ndarray, **kw) -> xr.DataArray:
    p = np.stack([1 - p_cloud, p_cloud, np.zeros_like(p_cloud)]).astype(np.float32)
    da_ = xr.DataArray(
        p, dims=("class", "y", "x"), coords={"class": ["clear", "cloud", "shadow"], **_coords(**kw)}
    )
    return da_.rio.write_crs("EPSG:32633")


def test_best_pixel_uses_probabilities_and_target_date():
    h = w = 4
    cubes = [_cube(np.full((3, h, w), 0.1 * (t + 1), np.float32), h=h, w=w) for t in range(3)]
    p = [np.full((h, w), x, np.float32) for x in (0.3, 0.1, 0.1)]
    p[2][0, 0] = 0.05
    probs = [_probs(x, h=h, w=w) for x in p]
    dates = ["2024-06-01", "2024-06-11", "2024-06-21"]
    # masks derived from probabilities (all clear: p_cloud < 0.5); lowest cloud probability wins
    out = composite(cubes, probabilities=probs, method="best-pixel", dates=dates).compute()
    assert out["source_index"].values[0, 0] == 2
    assert out["source_index"].values[1, 1] == 1  # tie 1 vs 2 -> input order
    out = composite(
        cubes, probabilities=probs, method="best-pixel", dates=dates, target_date="2024-06-20"
    ).compute()
    assert out["source_index"].values[1, 1] == 2  # tie -> closest to the target date
    np.testing.assert_allclose(out["reflectance"].values[:, 1, 1], 0.3)
    assert out.attrs["dates"][0].startswith("2024-06-01")
    # dates from the cubes' datetime attribute
    for c, d in zip(cubes, dates, strict=True):
        c.attrs["datetime"] = d + "T10:00:00Z"
    out = composite(cubes, probabilities=probs, method="best-pixel", target_date="2024-06-02").compute()
    assert out["source_index"].values[1, 1] == 1


def test_source_index_nodata_where_no_clear():
    cubes = [_cube(np.full((3, 4, 4), 0.2, np.float32), h=4, w=4)] * 2
    masks = [_mask(np.ones((4, 4)), h=4, w=4)] * 2
    out = composite(cubes, masks, method="best-pixel").compute()
    assert (out["source_index"].values == SOURCE_NODATA[np.dtype("uint8")]).all()
    assert (out["count"].values == 0).all() and np.isnan(out["reflectance"].values).all()


def test_to_uint16_scales_and_marks_nodata(series):
    truth, classes, cubes, masks = series
    result = composite(cubes, masks, method="best-pixel")
    out = to_uint16(result, bands=["B04", "B02"]).compute()
    assert out.dtype == np.uint16 and list(out["band"].values) == ["B04", "B02", "count", "source"]
    assert out.rio.nodata == 0 and out.rio.crs.to_epsg() == 32633
    count = (classes == 0).sum(axis=0)
    has = count > 0
    np.testing.assert_array_equal(out.values[0][has], np.round(truth[2][has] * 10000))
    assert (out.values[:, ~has] == 0).all()
    np.testing.assert_array_equal(out.values[2], count)
    assert out.values[3][has].min() >= 1  # 1-based scene number
    zero = composite([_cube(np.zeros((3, 2, 2)), h=2, w=2)], [_mask(np.zeros((2, 2)), h=2, w=2)])
    assert (to_uint16(zero).values[:3] == 1).all()  # a valid 0 reflectance never reads as nodata
    with pytest.raises(BandMismatchError, match="B12"):
        to_uint16(result, bands=["B12"])


def test_masks_without_crs_of_the_scene_shape_are_accepted():
    cube = _cube(np.full((3, 5, 5), 0.2, np.float32), h=5, w=5)
    out = composite([cube], [xr.DataArray(np.zeros((5, 5), np.uint8), dims=("y", "x"))]).compute()
    assert (out["count"].values == 1).all()
    with pytest.raises(InvalidParameterError, match="no CRS and shape"):
        composite([cube], [xr.DataArray(np.zeros((4, 5), np.uint8), dims=("y", "x"))])


def test_invalid_inputs_say_what_to_do(series):
    _, _, cubes, masks = series
    with pytest.raises(InvalidParameterError, match="at least one"):
        composite([], [])
    with pytest.raises(InvalidParameterError, match="one per scene"):
        composite(cubes, masks[:2])
    with pytest.raises(InvalidParameterError, match="Neither masks nor probabilities"):
        composite(cubes)
    other = cubes[1].assign_coords(band=["B02", "B03", "B08"])
    with pytest.raises(BandMismatchError, match="same bands"):
        composite([cubes[0], other], masks[:2])
    with pytest.raises(InvalidParameterError, match="no dates"):
        composite(cubes, masks, method="best-pixel", target_date="2024-01-01")
    with pytest.raises(InvalidParameterError, match="not a date"):
        composite(cubes, masks, dates=["yesterday"] * T)
    with pytest.raises(InvalidParameterError, match="one date per scene"):
        composite(cubes, masks, dates=["2024-01-01"])
    with pytest.raises(InvalidParameterError, match="0 or more"):
        composite(cubes, masks, buffer=-2)
    with pytest.raises(InvalidParameterError, match="Unknown composite method"):
        composite(cubes, masks, method="max")
