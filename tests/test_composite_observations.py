"""min/max observations, scene order and the date layer, through ``composite`` on synthetic series."""

from __future__ import annotations

import threading
from collections import Counter

import dask.array as da
import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr

from s2mask.composite import composite, to_uint16
from s2mask.errors import InvalidParameterError

BANDS = ["B02", "B03", "B04"]
T, H, W = 5, 48, 64
DATES = ["2024-06-01", "2024-05-02", "2024-07-11", "2024-06-21", "2024-06-05"]
METHODS = [("median", None), ("mean", None), ("percentile", 30.0), ("best-pixel", None),
           ("medoid", None), ("geomedian", None), ("first", None)]  # fmt: skip


def _coords(h=H, w=W):
    return {"y": 5_000_000.0 - 10.0 * (np.arange(h) + 0.5), "x": 400_000.0 + 10.0 * (np.arange(w) + 0.5)}


def _cube(arr, chunks=(3, 16, 16)) -> xr.DataArray:
    data = arr if isinstance(arr, da.Array) else da.from_array(arr, chunks=chunks)
    cube = xr.DataArray(data, dims=("band", "y", "x"), coords={"band": BANDS, **_coords()})
    return cube.rio.write_crs("EPSG:32633")


def _mask(arr) -> xr.DataArray:
    data = arr if isinstance(arr, da.Array) else da.from_array(arr, chunks=(16, 16))
    return xr.DataArray(data, dims=("y", "x"), coords=_coords()).rio.write_crs("EPSG:32633")


@pytest.fixture(scope="module")
def series():
    """Each scene's clear values differ (so which scene was used shows); clouds read 0.9."""
    rng = np.random.default_rng(7)
    clear_values = rng.uniform(0.02, 0.5, (T, 3, H, W)).astype(np.float32)
    classes = rng.choice(np.array([0, 1, 2], np.uint8), (T, H, W), p=[0.55, 0.3, 0.15])
    classes[:, :2, :] = 1  # never clear
    values = np.where(classes[:, None] == 0, clear_values, np.float32(0.9))
    return values, classes


def _run(values, classes, **kw):
    cubes = [_cube(values[t]) for t in range(len(values))]
    masks = [_mask(classes[t]) for t in range(len(values))]
    return composite(cubes, masks, dates=DATES[: len(values)], chunks=kw.pop("chunks", 16), **kw).compute()


@pytest.mark.parametrize(("method", "q"), METHODS)
def test_every_method_uses_only_clear_values_and_chunks_do_not_matter(series, method, q):
    values, classes = series
    small = _run(values, classes, method=method, percentile=q, chunks=16)
    whole = _run(values, classes, method=method, percentile=q, chunks=64)
    for name in small.data_vars:
        np.testing.assert_array_equal(small[name].values, whole[name].values, err_msg=name)
    clear = classes == 0
    out = small["reflectance"].values
    np.testing.assert_array_equal(small["count"].values, clear.sum(axis=0))
    has = clear.any(axis=0)
    assert np.isnan(out[:, ~has]).all() and np.isfinite(out[:, has]).all()
    masked = np.where(clear[:, None], values, np.nan)
    # within the clear values' range per band: no cloud (0.9) leaks in
    with np.errstate(invalid="ignore"):
        assert (out[:, has] <= np.nanmax(masked[:, :, has], axis=0) + 1e-6).all()
        assert (out[:, has] >= np.nanmin(masked[:, :, has], axis=0) - 1e-6).all()
    if "source_index" in small:
        src = small["source_index"].values
        rows, cols = np.nonzero(has)
        assert clear[src[has], rows, cols].all()  # the chosen observation is clear
        chosen = np.take_along_axis(values, src.astype(int)[None, None] * has, axis=0)[0]
        np.testing.assert_array_equal(out[:, has], chosen[:, has])
        days = np.array([np.datetime64(d, "D").astype(int) for d in DATES])
        np.testing.assert_array_equal(small["date"].values[has], days[src[has]])
        assert (small["date"].values[~has] == 0).all()
    else:
        assert "date" not in small


def test_first_follows_the_order(series):
    values, classes = series
    clear = classes == 0
    has = clear.any(axis=0)
    when = np.array([np.datetime64(d) for d in DATES])
    for order, sequence in [
        ("input", np.arange(T)),
        ("oldest", np.argsort(when, kind="stable")),
        ("newest", np.argsort(-when.astype(int), kind="stable")),
    ]:
        src = _run(values, classes, method="first", order=order)["source_index"].values
        expected = sequence[np.argmax(clear[sequence], axis=0)]
        np.testing.assert_array_equal(src[has], expected[has], err_msg=order)
    cloud = np.array([((classes[t] == 1) | (classes[t] == 2)).mean() for t in range(T)])
    out = _run(values, classes, method="first", order="least-cloudy")
    least = np.argsort(cloud, kind="stable")
    assert out.attrs["order_scenes"] == least.tolist() and out.attrs["order"] == "least-cloudy"
    expected = least[np.argmax(clear[least], axis=0)]
    np.testing.assert_array_equal(out["source_index"].values[has], expected[has])
    # target date: closest first (2024-06-05 is scene 4, then 2024-06-01 scene 0)
    out = _run(values, classes, method="first", target_date="2024-06-04")
    assert out.attrs["order_scenes"][:2] == [4, 0]


def test_min_observations_makes_sparse_pixels_nodata_and_keeps_count(series):
    values, classes = series
    count = (classes == 0).sum(axis=0)
    assert {1, 2, 3} <= set(np.unique(count).tolist())
    out = _run(values, classes, method="medoid", min_observations=3)
    np.testing.assert_array_equal(out["count"].values, count)
    refl = out["reflectance"].values
    assert np.isnan(refl[:, count < 3]).all() and np.isfinite(refl[:, count >= 3]).all()
    assert (out["source_index"].values[count < 3] == 255).all() and (out["date"].values[count < 3] == 0).all()
    full = _run(values, classes, method="medoid")
    np.testing.assert_array_equal(refl[:, count >= 3], full["reflectance"].values[:, count >= 3])
    written = to_uint16(out).values
    assert (written[:3, count < 3] == 0).all() and (written[3] == count).all()  # count stays informative
    assert (written[4:, count < 3] == 0).all() and (written[:, count >= 3] > 0).all()


@pytest.mark.parametrize(("method", "q"), METHODS)
def test_max_observations_uses_the_first_n_clear_in_order(series, method, q):
    values, classes = series
    n = 2
    clear = classes == 0
    capped = clear & (np.cumsum(clear, axis=0) <= n)
    got = _run(values, classes, method=method, percentile=q, max_observations=n)
    # reference: the same method where only the first n clear observations are marked clear
    ref = _run(values, np.where(capped, 0, 1).astype(np.uint8), method=method, percentile=q)
    for name in ref.data_vars:
        np.testing.assert_array_equal(got[name].values, ref[name].values, err_msg=name)
    assert got["count"].values.max() == n


class _Reads:
    """Counts the blocks of each scene that were computed (stands in for reading / predicting them)."""

    def __init__(self) -> None:
        self.blocks: Counter[int] = Counter()
        self._lock = threading.Lock()

    def scene(self, t: int, values: np.ndarray, classes: np.ndarray) -> tuple[xr.DataArray, xr.DataArray]:
        def read(block: np.ndarray) -> np.ndarray:
            with self._lock:
                self.blocks[t] += 1
            return block

        cube = da.from_array(values, chunks=(3, 16, 16)).map_blocks(
            read, meta=np.empty((0, 0, 0), np.float32)
        )
        return _cube(cube), _mask(da.from_array(classes, chunks=(16, 16)))


def test_max_observations_does_not_read_scenes_for_complete_blocks():
    rng = np.random.default_rng(1)
    values = rng.uniform(0.02, 0.5, (T, 3, H, W)).astype(np.float32)
    classes = np.zeros((T, H, W), np.uint8)
    classes[0, 20:24, 40:44] = 1  # scene 0 is clear but for a patch inside one 16 x 16 block
    reads = _Reads()
    pairs = [reads.scene(t, values[t], classes[t]) for t in range(T)]
    blocks = (H // 16) * (W // 16)
    out = composite(
        [c for c, _ in pairs], [m for _, m in pairs], method="first", max_observations=1, chunks=16
    )
    result = out.compute()
    assert reads.blocks[0] == blocks
    assert reads.blocks[1] == 1  # only the block with the patch needed scene 1
    assert sum(reads.blocks[t] for t in range(2, T)) == 0
    np.testing.assert_array_equal(result["count"].values, np.ones((H, W)))
    src = result["source_index"].values
    assert (src[20:24, 40:44] == 1).all() and (src == 0).sum() == H * W - 16

    reads.blocks.clear()  # without the cap every block of every scene is read
    composite([c for c, _ in pairs], [m for _, m in pairs], method="first", chunks=16).compute()
    assert all(reads.blocks[t] == blocks for t in range(T))


def test_max_observations_skips_the_model_for_complete_blocks(tmp_path):
    """Through composite_products: the model is not called for scenes no block needs any more."""
    import rasterio
    from rasterio.transform import from_origin

    from s2mask.composite import CompositeOptions, composite_products
    from s2mask.testing.models import ThresholdModel

    bands = ("B02", "B03", "B04", "B08")
    paths = []
    for t, date in enumerate(["20240601T101031", "20240611T101031", "20240621T101031"]):
        p = tmp_path / f"S2A_MSIL2A_{date}_N0510_R022_T33TUL_{date}.tif"
        data = np.full((4, 64, 64), 500 + 100 * t, np.uint16)  # clear everywhere (0.05-0.07)
        profile = {"driver": "GTiff", "width": 64, "height": 64, "count": 4, "dtype": "uint16",
                   "crs": "EPSG:32633", "transform": from_origin(500_000, 4_600_000, 10, 10), "nodata": 0}  # fmt: skip
        with rasterio.open(p, "w", **profile) as dst:
            dst.write(data)
            for i, b in enumerate(bands, start=1):
                dst.set_band_description(i, b)
        paths.append(p)

    def run(name: str, **kw) -> tuple[int, np.ndarray]:
        model = ThresholdModel(bands=bands, cloud=0.3, shadow=0.0)
        opts = CompositeOptions(
            bands=bands, method="first", quicklook=False, window=32, overlap=0, chunks=32, **kw
        )
        cog = composite_products(paths, tmp_path / name, model=model, options=opts).cog
        with rasterio.open(cog) as src:
            return model.calls, src.read(src.descriptions.index("source") + 1)

    every, source = run("all.tif")
    capped, capped_source = run("first.tif", max_observations=1)
    assert (source == 1).all() and (capped_source == 1).all()  # scene 1 is clear everywhere
    assert every == 3 * capped > 0  # the model ran on scene 1 only


def test_bad_counts_and_orders_are_refused(series):
    values, classes = series
    with pytest.raises(InvalidParameterError, match="min_observations=0"):
        _run(values, classes, min_observations=0)
    with pytest.raises(InvalidParameterError, match="below min_observations"):
        _run(values, classes, min_observations=3, max_observations=2)
    with pytest.raises(InvalidParameterError, match="Unknown scene order"):
        _run(values, classes, order="random")
    with pytest.raises(InvalidParameterError, match="target date is itself an order"):
        _run(values, classes, order="oldest", target_date="2024-06-01")
    cubes = [_cube(values[t]) for t in range(T)]
    masks = [_mask(classes[t]) for t in range(T)]
    with pytest.raises(InvalidParameterError, match="no dates"):
        composite(cubes, masks, order="newest")
    probs = [
        xr.DataArray(
            np.ones((3, H, W), np.float32) / 3, dims=("class", "y", "x"), coords=_coords()
        ).rio.write_crs("EPSG:32633")
        for _ in range(T)
    ]
    with pytest.raises(InvalidParameterError, match="cloud cover"):
        composite(cubes, probabilities=probs, order="least-cloudy")
