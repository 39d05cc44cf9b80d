"""write_cog: streaming, valid COGs, MODE overviews, metadata, and nothing lost on failure."""

from __future__ import annotations

import errno
import tracemalloc

import dask
import dask.array as da
import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterio.transform import from_origin
from rio_cogeo.cogeo import cog_validate

import s2mask.engine.compute
from s2mask.engine.compute import compute_blocks
from s2mask.errors import InvalidParameterError, OutputError, OutputExistsError
from s2mask.io import cog
from s2mask.io.cog import (
    mask_colormap,
    mask_tags,
    probabilities_to_uint8,
    write_cog,
    write_mask,
    write_probabilities,
)

ORIGIN = (600000.0, 5200000.0)


def _georef(data: np.ndarray | da.Array, dims: tuple[str, ...], crs: int = 32633, **coords) -> xr.DataArray:
    h, w = data.shape[-2:]
    x = ORIGIN[0] + 10.0 * np.arange(w) + 5.0
    y = ORIGIN[1] - 10.0 * np.arange(h) - 5.0
    return xr.DataArray(data, dims=dims, coords={"y": y, "x": x, **coords}).rio.write_crs(crs)


def _mask_array(h: int = 1100, w: int = 1300, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 3, (h, w)).astype(np.uint8)
    a[:37, :] = 255
    a[500:700, 900:1000] = 1
    return a


def _raising_block(block: np.ndarray, block_info=None) -> np.ndarray:
    if block_info[0]["chunk-location"] == (1, 1):
        raise RuntimeError("block failed")
    return block


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def mask_np() -> np.ndarray:
    return _mask_array()


@pytest.fixture
def mask_da(mask_np) -> xr.DataArray:
    chunks = ((300, 500, 300), (700, 13, 587))  # uneven, not aligned to 512 tiles
    return _georef(da.from_array(mask_np, chunks=chunks), ("y", "x"))


def test_mask_cog_round_trip(tmp_path, mask_np, mask_da):
    out = write_mask(mask_da, tmp_path / "mask.tif")
    assert out == tmp_path / "mask.tif"
    valid, errors, _ = cog_validate(str(out), quiet=True)
    assert valid, errors
    with rasterio.open(out) as src:
        assert src.block_shapes == [(512, 512)]
        assert src.compression.value == "DEFLATE"
        assert src.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "2"
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.overviews(1) == [2, 4]
        assert src.dtypes == ("uint8",) and src.nodata == 255
        assert src.crs.to_epsg() == 32633
        assert src.transform == from_origin(*ORIGIN, 10.0, 10.0)
        np.testing.assert_array_equal(src.read(1), mask_np)
        cmap = src.colormap(1)
        assert cmap[1] == (255, 255, 255, 255) and cmap[2] == (90, 90, 90, 255)
        assert cmap[0] == mask_colormap()[0] and cmap[255][3] == 0
        tags = src.tags()
        assert {k: tags[k] for k in mask_tags()} == mask_tags()
        assert tags["CLASS_2"] == "shadow" and tags["CLASS_255"] == "nodata"
        assert tags["TIFFTAG_SOFTWARE"].startswith("s2mask ")
        assert "1 cloud" in src.descriptions[0]
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("height", "width", "blocksize"),
    [(856, 512, 512), (600, 512, 512), (513, 512, 512), (512, 856, 512), (2049, 513, 512),
     (97, 1031, 512), (512, 512, 512), (1030, 256, 256), (600, 16, 16), (1024, 1024, 512)],
)  # fmt: skip
def test_every_shape_gives_a_valid_cog(tmp_path, height, width, blocksize):
    """856 x 512 (the s2cloudless scene) was refused: a tile as wide as the image reads as "not tiled"."""
    rng = np.random.default_rng(height * width)
    data = rng.integers(0, 3, (9, height, width)).astype(np.uint16)
    cube = _georef(da.from_array(data, chunks=(9, 300, 300)), ("band", "y", "x"))
    out = write_cog(cube, tmp_path / "cube.tif", blocksize=blocksize)
    valid, errors, _ = cog_validate(str(out), quiet=True)
    assert valid, errors
    with rasterio.open(out) as ds:
        assert (ds.height, ds.width) == (height, width)
        assert ds.block_shapes[0][1] != width or max(height, width) <= 512
        np.testing.assert_array_equal(ds.read(), data)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    height=st.one_of(st.integers(1, 1100), st.sampled_from([256, 512, 513, 1024, 1025])),
    width=st.one_of(st.integers(1, 1100), st.sampled_from([256, 512, 513, 1024, 1025])),
    blocksize=st.sampled_from([16, 128, 256, 512]),
)
def test_any_shape_and_tile_size_gives_a_valid_cog(tmp_path, height, width, blocksize):
    mask = _georef(da.zeros((height, width), dtype=np.uint8, chunks=512), ("y", "x"))
    out = write_cog(mask, tmp_path / "m.tif", blocksize=blocksize, overwrite=True)
    valid, errors, _ = cog_validate(str(out), quiet=True)
    assert valid, (height, width, blocksize, errors)


def test_overviews_use_mode_not_average(tmp_path):
    # only 0 and 2 (and nodata): averaging 2x2 blocks would invent the class 1
    yy, xx = np.mgrid[0:1024, 0:1024]
    a = np.where((yy + xx) % 2 == 0, 0, 2).astype(np.uint8)  # middle: 2x2 average is exactly 1
    a[:, :300] = np.where((yy[:, :300] % 2 == 0) & (xx[:, :300] % 2 == 0), 2, 0)  # left: mostly 0
    a[:, 700:] = np.where((yy[:, 700:] % 2 == 0) & (xx[:, 700:] % 2 == 0), 0, 2)  # right: mostly 2
    a[:64] = 255
    mask = _georef(da.from_array(a, chunks=400), ("y", "x"))
    out = write_mask(mask, tmp_path / "mode.tif")
    avg = write_cog(mask, tmp_path / "avg.tif", nodata=255, overview_resampling="average")
    with rasterio.open(out) as src:
        assert src.overviews(1) == [2]
        level = src.read(1, out_shape=(512, 512))
        assert set(np.unique(level)) <= {0, 2, 255}
        assert 2 in level and 0 in level
    with rasterio.open(avg) as src:  # the test discriminates: average does break classes
        assert 1 in src.read(1, out_shape=(512, 512))


def test_multiband_float_with_nan_and_descriptions(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.random((3, 200, 300)).astype(np.float32)
    a[:, :10, :10] = np.nan
    data = _georef(da.from_array(a, chunks=(1, 64, 100)), ("band", "y", "x"), band=["B02", "B03", "B04"])
    out = write_cog(data, tmp_path / "f.tif", nodata=np.nan, overview_resampling="average", blocksize=128)
    with rasterio.open(out) as src:
        assert src.count == 3 and src.dtypes[0] == "float32"
        assert src.descriptions == ("B02", "B03", "B04")
        assert src.block_shapes[0] == (128, 128)
        assert src.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "3"
        np.testing.assert_array_equal(src.read(), a)  # NaN == NaN under assert_array_equal
    assert cog_validate(str(out), quiet=True)[0]


def test_float_to_uint8_maps_nan_to_nodata_and_bool_input(tmp_path):
    a = np.array([[0.0, 1.0], [2.0, np.nan]], dtype=np.float32)
    out = write_cog(_georef(da.from_array(a), ("y", "x")), tmp_path / "c.tif", dtype="uint8", nodata=255)
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(1), [[0, 1], [2, 255]])
    b = _georef(da.from_array(np.array([[True, False]])), ("y", "x"))
    with rasterio.open(write_cog(b, tmp_path / "b.tif")) as src:
        assert src.dtypes[0] == "uint8"
        np.testing.assert_array_equal(src.read(1), [[1, 0]])


def test_numpy_backed_input_is_accepted(tmp_path, mask_np):
    out = write_mask(_georef(mask_np, ("y", "x")), tmp_path / "np.tif")
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(1), mask_np)


def test_existing_output_refused_before_any_computation(tmp_path, mask_da):
    target = tmp_path / "mask.tif"
    target.write_bytes(b"old output")
    exploding = mask_da.copy(data=mask_da.data.map_blocks(_raising_block, dtype=np.uint8))
    with pytest.raises(OutputExistsError, match="overwrite"):
        write_mask(exploding, target)  # the block error would win if anything were computed
    assert target.read_bytes() == b"old output"
    assert _leftovers(tmp_path) == []


def test_overwrite_replaces(tmp_path, mask_np, mask_da):
    target = tmp_path / "mask.tif"
    target.write_bytes(b"old output")
    write_mask(mask_da, target, overwrite=True)
    with rasterio.open(target) as src:
        np.testing.assert_array_equal(src.read(1), mask_np)


def test_failing_block_leaves_old_output_and_no_temps(tmp_path, mask_da):
    target = tmp_path / "mask.tif"
    target.write_bytes(b"old output")
    exploding = mask_da.copy(data=mask_da.data.map_blocks(_raising_block, dtype=np.uint8))
    with pytest.raises(RuntimeError, match="block failed"):
        write_mask(exploding, target, overwrite=True)
    assert target.read_bytes() == b"old output"
    assert _leftovers(tmp_path) == []
    with pytest.raises(RuntimeError, match="block failed"):
        write_mask(exploding, tmp_path / "new.tif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.tif"]  # and no new.tif.aux.xml


def test_disk_full_mid_write(tmp_path, mask_da, monkeypatch):
    target = tmp_path / "mask.tif"
    target.write_bytes(b"old output")
    calls = []

    def full(dst, block, window):
        calls.append(window)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        dst.write(block, window=window)

    monkeypatch.setattr(cog, "_write_window", full)
    with pytest.raises(OutputError, match="disk is full"):
        write_mask(mask_da, target, overwrite=True, scheduler="sync")
    assert len(calls) == 3
    assert target.read_bytes() == b"old output"
    assert _leftovers(tmp_path) == []


def test_conversion_failure_is_output_error(tmp_path, mask_da, monkeypatch):
    def broken(*args, **kwargs):
        raise rasterio.errors.RasterioIOError("write failed: No space left on device")

    monkeypatch.setattr(cog.rasterio.shutil, "copy", broken)
    with pytest.raises(OutputError, match="disk is full"):
        write_mask(mask_da, tmp_path / "m.tif")
    assert list(tmp_path.iterdir()) == []


def test_invalid_cog_is_refused(tmp_path, mask_da, monkeypatch):
    import rio_cogeo.cogeo

    monkeypatch.setattr(rio_cogeo.cogeo, "cog_validate", lambda *a, **k: (False, ["no overviews"], []))
    with pytest.raises(OutputError, match="not valid.*no overviews"):
        write_mask(mask_da, tmp_path / "m.tif")
    assert list(tmp_path.iterdir()) == []


def test_missing_or_unwritable_folder(tmp_path, mask_da, monkeypatch):
    with pytest.raises(OutputError, match="mkdir -p"):
        write_mask(mask_da, tmp_path / "missing" / "m.tif")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        write_mask(mask_da, tmp_path / "afile" / "m.tif")
    monkeypatch.setattr("s2mask._atomic.os.access", lambda *a, **k: False)
    with pytest.raises(OutputError, match="not writable"):
        write_mask(mask_da, tmp_path / "m.tif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"overview_resampling": "median-ish"}, "overview_resampling"),
        ({"blocksize": 500}, "multiple of 16"),
        ({"nodata": 300}, "does not fit"),
        ({"band_descriptions": ["a", "b"]}, "one per band"),
    ],
)
def test_bad_arguments_rejected_before_work(tmp_path, mask_da, kwargs, match):
    exploding = mask_da.copy(data=mask_da.data.map_blocks(_raising_block, dtype=np.uint8))
    with pytest.raises(InvalidParameterError, match=match):
        write_cog(exploding, tmp_path / "m.tif", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_colormap_needs_single_uint8_band(tmp_path):
    data = _georef(da.zeros((2, 32, 32), dtype=np.uint8), ("band", "y", "x"))
    with pytest.raises(InvalidParameterError, match="colour table"):
        write_cog(data, tmp_path / "m.tif", colormap=mask_colormap())


def test_progress_object_ticks_once_per_block(tmp_path, mask_da):
    class Counter:
        total = 99
        n = 0

        def update(self, n=1):
            self.n += n

    bar = Counter()
    write_mask(mask_da, tmp_path / "m.tif", progress=bar)
    assert bar.n == mask_da.data.npartitions == 9


def test_progress_true_draws_on_stderr(tmp_path, mask_da, capsys):
    write_mask(mask_da, tmp_path / "m.tif", progress=True)
    assert "m.tif" in capsys.readouterr().err
    write_mask(mask_da, tmp_path / "q.tif", progress=False)
    assert capsys.readouterr().err == ""


def test_probabilities_to_uint8_is_lazy_and_exact():
    p = np.array([[[0.0, 0.004, 0.5], [1.0, 1.2, np.nan]]], dtype=np.float32)
    probs = _georef(da.from_array(p), ("class", "y", "x"), **{"class": ["cloud"]})
    out = probabilities_to_uint8(probs)
    assert isinstance(out.data, da.Array)
    assert out.dtype == np.uint8 and out.rio.nodata == 255 and out.rio.crs.to_epsg() == 32633
    np.testing.assert_array_equal(out.values, [[[0, 0, 50], [100, 100, 255]]])
    with pytest.raises(InvalidParameterError):
        probabilities_to_uint8(probs, nodata=100)


def test_write_probabilities(tmp_path):
    rng = np.random.default_rng(2)
    p = rng.dirichlet((1, 1, 1), size=(300, 200)).transpose(2, 0, 1).astype(np.float32)
    p[:, :5] = np.nan
    probs = _georef(
        da.from_array(p, chunks=(3, 100, 90)), ("class", "y", "x"), **{"class": ["clear", "cloud", "shadow"]}
    )
    out = write_probabilities(probs, tmp_path / "p.tif")
    with rasterio.open(out) as src:
        assert src.descriptions == (
            "clear probability (%)",
            "cloud probability (%)",
            "shadow probability (%)",
        )
        assert src.nodata == 255 and src.tags()["UNITS"] == "percent"
        got = src.read()
    np.testing.assert_array_equal(got, probabilities_to_uint8(probs).values)
    assert cog_validate(str(out), quiet=True)[0]


@pytest.mark.parametrize("compute", [cog.compute_each_block, compute_blocks], ids=["writer", "engine"])
def test_processes_scheduler_writes_from_the_caller(tmp_path, mask_np, mask_da, monkeypatch, compute):
    # a custom scheduler that is neither local-threaded nor distributed: blocks computed there, written here
    seen = []

    def my_get(dsk, keys, **kwargs):
        seen.append(len(keys) if isinstance(keys, list) else 1)
        return dask.get(dsk, keys, **kwargs)

    monkeypatch.setattr(s2mask.engine.compute, "BATCH_PER_CPU", 1)
    out = write_mask(mask_da, tmp_path / "m.tif", scheduler=my_get, compute=compute)
    assert seen and sum(seen) >= 9
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(1), mask_np)


@pytest.mark.parametrize("compute", [cog.compute_each_block, compute_blocks], ids=["writer", "engine"])
def test_distributed_client(tmp_path, mask_np, mask_da, compute):
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        out = write_mask(mask_da, tmp_path / "m.tif", scheduler=client, compute=compute)
        with rasterio.open(out) as src:
            np.testing.assert_array_equal(src.read(1), mask_np)
        exploding = mask_da.copy(data=mask_da.data.map_blocks(_raising_block, dtype=np.uint8))
        with pytest.raises(RuntimeError, match="block failed"):
            write_mask(exploding, tmp_path / "bad.tif", scheduler=client, compute=compute)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tif", "m.tif.aux.xml"]


@pytest.mark.slow
def test_processes_scheduler_and_process_cluster(tmp_path, mask_np, mask_da):
    distributed = pytest.importorskip("distributed")
    out = write_mask(mask_da, tmp_path / "p.tif", scheduler="processes", compute=compute_blocks)
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(1), mask_np)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        out = write_mask(mask_da, tmp_path / "d.tif", scheduler=client, compute=compute_blocks)
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(1), mask_np)
    assert _leftovers(tmp_path) == []


@pytest.mark.slow
def test_full_tile_mask_streams_with_bounded_memory(tmp_path, shared_data):
    from conftest import need

    src_path = need(
        shared_data
        / "omnicloudmask_T19GBQ"
        / "S2A_MSIL2A_20170725T142751_N9999_R053_T19GBQ_20240410T040247_expected_output.tif"
    )
    raw = rioxarray.open_rasterio(src_path, chunks={"band": 1, "y": 1280, "x": 1280}).squeeze(
        "band", drop=True
    )
    lut = np.array([0, 1, 1, 2] + [255] * 252, dtype=np.uint8)
    mask = raw.copy(data=raw.data.map_blocks(lambda b: lut[b], dtype=np.uint8))
    tracemalloc.start()
    try:
        out = write_mask(mask, tmp_path / "tile.tif", scheduler="threads", compute=compute_blocks)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    full = 10980 * 10980
    assert peak < full / 3, (
        f"peak Python-side memory {peak / 1e6:.0f} MB; the full tile is {full / 1e6:.0f} MB"
    )
    assert cog_validate(str(out), quiet=True)[0]
    with rasterio.open(out) as dst, rasterio.open(src_path) as src:
        assert dst.shape == (10980, 10980) and dst.crs == src.crs and dst.transform == src.transform
        assert dst.overviews(1) == [2, 4, 8, 16, 32]
        window = rasterio.windows.Window(5000, 7000, 1500, 900)
        np.testing.assert_array_equal(dst.read(1, window=window), lut[src.read(1, window=window)])
        assert set(np.unique(dst.read(1, out_shape=(10980 // 16, 10980 // 16)))) <= {0, 1, 2, 255}


def test_block_count_and_silent_progress_bar(capsys, mask_da):
    from s2mask.progress import block_count, progress_bar

    assert block_count(7) == 7
    assert block_count(mask_da) == block_count(mask_da.data) == 9
    assert block_count(np.zeros(3)) == 1
    with pytest.raises(TypeError):
        block_count(True)
    with progress_bar(mask_da, desc="quiet", enabled=False) as bar:
        bar.update(9)
    assert capsys.readouterr().err == ""
    with progress_bar(3, desc="loud") as bar:
        for _ in range(3):
            bar.update(1)
    err = capsys.readouterr().err
    assert "loud" in err and "3/3" in err


def test_real_patch_mask_and_probabilities_end_to_end(tmp_path, shared_data):
    """Real L1C patch -> ThresholdModel -> predict -> to_mask -> COGs equal the in-memory result."""
    from conftest import need

    from s2mask.bands import BAND_NAMES
    from s2mask.engine import predict
    from s2mask.mask import to_mask
    from s2mask.testing.models import ThresholdModel

    path = need(shared_data / "sen12mscr_nigeria" / "ROIs1868_summer_s2_cloudy_19_p30.tif")
    raw = rioxarray.open_rasterio(path, chunks={"band": -1, "y": 100, "x": 128})
    cube = (raw.astype(np.float32) / 10000.0).assign_coords(band=list(BAND_NAMES))
    model = ThresholdModel()
    cube = cube.sel(band=list(model.bands))
    probs = predict(cube, model, window=64, overlap=16)
    mask = to_mask(probs)
    expected = mask.values
    assert {0, 1}.issubset(set(np.unique(expected)))  # a cloudy patch
    out = write_mask(mask, tmp_path / "mask.tif")
    proba = write_probabilities(probs, tmp_path / "proba.tif")
    with rasterio.open(out) as src, rasterio.open(path) as ref:
        np.testing.assert_array_equal(src.read(1), expected)
        assert src.crs == ref.crs and src.transform == ref.transform
    with rasterio.open(proba) as src:
        assert src.count == 3 and src.descriptions[1] == "cloud probability (%)"
        np.testing.assert_array_equal(src.read(), probabilities_to_uint8(probs).values)
