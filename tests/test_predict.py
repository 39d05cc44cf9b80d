"""The windowed inference engine: chunk independence, NaN handling, laziness, real scene."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import torch
import xarray as xr
from dask.callbacks import Callback
from hypothesis import given, settings
from hypothesis import strategies as st

from s2mask.bands import BAND_NAMES, DEFAULT_BANDS
from s2mask.engine import Accumulator, count_windows, predict, predict_array
from s2mask.errors import BandMismatchError, InvalidParameterError
from s2mask.mask import class_fractions, to_mask
from s2mask.testing.models import ThresholdModel, tiny_unet


def make_cube(array: np.ndarray, chunks, bands=DEFAULT_BANDS, crs: str | None = "EPSG:32631") -> xr.DataArray:
    """A georeferenced dask cube like the readers return."""
    _, h, w = array.shape
    cube = xr.DataArray(
        da.from_array(array, chunks=(len(bands), *chunks) if not isinstance(chunks, int) else chunks),
        dims=("band", "y", "x"),
        coords={
            "band": list(bands),
            "y": 5_000_000.0 - 10.0 * np.arange(h) - 5,
            "x": 400_000.0 + 10.0 * np.arange(w) + 5,
        },
    )
    return cube.rio.write_crs(crs) if crs else cube


@pytest.fixture(scope="module")
def unet():
    return tiny_unet(window_size=32)


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    rng = np.random.default_rng(42)
    base = rng.random((9, 1, 1), dtype=np.float32) * 0.2
    img = base + 0.6 * rng.random((9, 75, 97), dtype=np.float32) ** 3
    img[:, :12, :40] = np.nan  # a nodata corner
    img[3, 50:60, 50:60] = np.nan  # some bands missing: still valid
    return img


def test_one_chunk_equals_many_uneven_chunks(unet, scene) -> None:
    one = predict(make_cube(scene, (75, 97)), unet, window=32, overlap=6).values
    uneven = make_cube(scene, ((5, 31, 1, 38), (40, 3, 29, 25)))
    many = predict(uneven, unet, window=32, overlap=6, chunks=((5, 31, 1, 38), (40, 3, 29, 25)))
    assert many.chunks[1:] == ((5, 31, 1, 38), (40, 3, 29, 25))
    np.testing.assert_allclose(many.values, one, atol=1e-4)
    defaults = predict(uneven, unet, window=32, overlap=6)  # engine picks stride-aligned blocks
    np.testing.assert_allclose(defaults.values, one, atol=1e-4)
    assert (
        to_mask(many).values
        == to_mask(predict(make_cube(scene, (75, 97)), unet, window=32, overlap=6)).values
    ).all()


def test_dask_shell_agrees_with_numpy_core(unet, scene) -> None:
    full = predict_array(scene, unet, window=32, overlap=6)
    lazy = predict(make_cube(scene, (20, 30)), unet, window=32, overlap=6, chunks=(23, 41)).values
    np.testing.assert_allclose(lazy, full, atol=1e-4)
    # a region computed from a sub-array with a halo equals the crop of the full result
    region = (30, 50, 40, 70)
    y0, x0 = 30 - 31, 40 - 31
    sub = scene[:, max(0, y0) : 50 + 31, x0 : 70 + 31]
    part = predict_array(
        sub, unet, window=32, overlap=6, origin=(max(0, y0), x0), full_shape=(75, 97), region=region
    )
    np.testing.assert_allclose(part, full[:, 30:50, 40:70], atol=1e-5)


def test_numpy_core_refuses_a_region_without_enough_halo(unet, scene) -> None:
    with pytest.raises(InvalidParameterError, match="halo"):
        predict_array(
            scene[:, 10:40, 10:40], unet, window=32, overlap=6, origin=(10, 10), full_shape=(75, 97)
        )


def test_probabilities_are_valid_and_nan_only_where_all_bands_are_nan(unet, scene) -> None:
    probs = predict(make_cube(scene, (40, 40)), unet, window=32, overlap=6).values
    nodata = np.isnan(scene).all(axis=0)
    assert (np.isnan(probs).any(axis=0) == nodata).all()
    np.testing.assert_allclose(probs[:, ~nodata].sum(axis=0), 1.0, atol=1e-4)
    assert probs.dtype == np.float32


def test_all_nan_windows_are_skipped_and_masked() -> None:
    img = np.full((9, 64, 128), 0.5, dtype=np.float32)
    img[:, :, :64] = np.nan  # two of the four 32x... windows per row hold no data
    model = ThresholdModel()
    probs = predict(make_cube(img, (64, 128)), model, window=32, overlap=0, batch_size=1)
    mask = to_mask(probs).values
    # windows start at x = 0, 32, 64, 96 and y = 0, 32: only those at x >= 64 hold data
    assert model.calls == 4
    assert (mask[:, :64] == 255).all() and (mask[:, 64:] == 1).all()
    assert np.isnan(probs.values[:, :, :64]).all()


def test_image_smaller_than_one_window(unet) -> None:
    rng = np.random.default_rng(1)
    img = rng.random((9, 10, 21), dtype=np.float32)
    probs = predict(make_cube(img, (10, 21)), unet, window=32, overlap=4)
    assert probs.shape == (3, 10, 21)
    assert np.isfinite(probs.values).all()
    np.testing.assert_allclose(probs.values, predict_array(img, unet, window=32, overlap=4), atol=1e-5)
    # the per-pixel model sees exactly its pixels: blending must not change them
    model = ThresholdModel()
    got = predict(make_cube(img, (10, 21)), model, window=32).values
    np.testing.assert_allclose(got, model.predict_proba(img[None])[0], atol=1e-6)
    one_px = predict_array(img[:, :1, :1], model, window=16, overlap=2)
    assert one_px.shape == (3, 1, 1) and np.isfinite(one_px).all()


def test_band_mismatch_names_both_sides(unet) -> None:
    img = np.zeros((6, 16, 16), dtype=np.float32)
    cube = make_cube(img, (16, 16), bands=("B02", "B03", "B04", "B08", "B11", "B12"))
    with pytest.raises(BandMismatchError, match=r"B02, B03, B04, B08, B11, B12 .*B05") as info:
        predict(cube, unet)
    assert "missing B05, B06, B07" in str(info.value)


def test_bands_are_taken_in_the_model_order(scene) -> None:
    model = ThresholdModel(bands=("B04", "B02"))
    shuffled = make_cube(scene[::-1], (75, 97), bands=DEFAULT_BANDS[::-1])
    ordered = make_cube(scene, (75, 97))
    a = predict(shuffled, model, window=32).values
    b = predict(ordered, model, window=32).values
    np.testing.assert_array_equal(a, b)


def test_batch_size_and_io_overlap_do_not_change_the_result(unet, scene) -> None:
    cube = make_cube(scene, (40, 50))
    a = predict(cube, unet, window=32, overlap=6, batch_size=1).values
    b = predict(cube, unet, window=32, overlap=6, batch_size=7, overlap_io=False).values
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_output_is_lazy_bounded_and_georeferenced(scene) -> None:
    model = ThresholdModel()
    cube = make_cube(scene, (40, 50))
    probs = predict(cube, model, window=32, overlap=4, chunks=(28, 28))
    assert model.calls == 0
    assert isinstance(probs.data, da.Array)
    assert max(probs.chunks[1]) <= 28 and max(probs.chunks[2]) <= 28
    assert probs.dims == ("class", "y", "x")
    assert probs.rio.crs.to_epsg() == 32631
    np.testing.assert_array_equal(probs["x"], cube["x"])
    assert probs.rio.transform() == cube.rio.transform()
    mask = to_mask(probs)
    assert model.calls == 0 and isinstance(mask.data, da.Array)
    assert mask.dtype == np.uint8 and mask.rio.crs.to_epsg() == 32631 and mask.rio.nodata == 255
    mask.values  # noqa: B018
    assert model.calls > 0


def _nbytes(obj) -> int:
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, (tuple, list)):
        return sum(_nbytes(o) for o in obj)
    if isinstance(obj, Accumulator):
        return obj.num.nbytes + obj.den.nbytes
    return 0


def test_memory_is_bounded_by_the_block_not_the_scene() -> None:
    rng = np.random.default_rng(3)
    img = rng.random((9, 320, 300), dtype=np.float32)
    sizes: list[int] = []

    class Sizes(Callback):
        def _posttask(self, key, result, dsk, state, id):
            sizes.append(_nbytes(result))

    mask = to_mask(predict(make_cube(img, (50, 50)), ThresholdModel(), window=32, overlap=4, chunks=(56, 56)))
    with Sizes():
        mask.compute(scheduler="threads")
    block = (9 + 3 + 2) * (56 + 32) ** 2 * 4  # bands + (K + 1) sums + valid mask over block + halo
    assert 0 < max(sizes) <= block < img.nbytes / 4


def test_class_coord_comes_from_the_card(unet, scene) -> None:
    probs = predict(make_cube(scene, (75, 97)), unet, window=32)
    assert list(probs["class"].values) == ["clear", "cloud", "shadow"]
    fractions = class_fractions(to_mask(probs))
    assert set(fractions) == {"clear", "cloud", "shadow", "nodata"}
    assert sum(fractions.values()) == pytest.approx(1.0)
    assert fractions["nodata"] == pytest.approx(np.isnan(scene).all(axis=0).mean())


def test_progress_counts_every_window_once(scene) -> None:
    done: list[int] = []
    cube = make_cube(scene, (33, 33))
    model = ThresholdModel()
    predict(cube, model, window=24, overlap=3, chunks=(19, 31), progress=done.append).compute(
        scheduler="sync"
    )
    assert sum(done) == count_windows(cube, model, window=24, overlap=3) > 1


@pytest.mark.parametrize("overlap", [16, 20])
def test_overlap_of_half_a_window_is_rejected(unet, scene, overlap: int) -> None:
    with pytest.raises(InvalidParameterError, match="overlap"):
        predict(make_cube(scene, (75, 97)), unet, window=32, overlap=overlap)


def test_real_scene_chunked_equals_unchunked(shared_data) -> None:
    path = shared_data / "s2cloudless_testscene" / "input_arrays.npz"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    s2 = np.load(path)["s2_im"][0]  # (856, 512, 13), ESA order
    img = np.ascontiguousarray(np.moveaxis(s2, -1, 0)).astype(np.float32)
    cube = make_cube(img, (-1, -1), bands=BAND_NAMES, crs=None)
    model = ThresholdModel()
    with dask.config.set(scheduler="threads"):
        whole = to_mask(predict(cube.chunk({"y": -1, "x": -1}), model, window=256)).values
        chunked = predict(cube.chunk({"y": 300, "x": 200}), model, window=256, chunks=(300, 200))
        chunked_mask = to_mask(chunked).values
    assert chunked.chunks[1] == (300, 300, 256)
    np.testing.assert_array_equal(chunked_mask, whole)
    # a per-pixel model's mask does not depend on windows at all
    sel = img[[BAND_NAMES.index(b) for b in DEFAULT_BANDS]]
    direct = model.predict_proba(sel[None])[0].argmax(axis=0)
    np.testing.assert_array_equal(whole, direct)
    assert 0.05 < (whole == 1).mean() < 0.95  # the scene really has clouds and clear land


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(scene) -> None:
    import copy

    from s2mask.model import LoadedModel

    cpu = tiny_unet(window_size=32)
    gpu = LoadedModel(copy.deepcopy(cpu.net), cpu.card, device="cuda")
    a = predict(make_cube(scene, (40, 50)), cpu, window=32, batch_size=4)
    b = predict(make_cube(scene, (40, 50)), gpu, window=32, batch_size=4)
    np.testing.assert_allclose(b.values, a.values, atol=5e-2)  # CUDA autocasts to half precision
    agree = to_mask(a).values == to_mask(b).values
    assert agree.mean() > 0.98 and (to_mask(b).values == 255).sum() == np.isnan(scene).all(axis=0).sum()


class WindowMeanModel:
    """Cheap numpy model with spatial context: each pixel's output depends on its window's mean."""

    bands, num_classes = ("B02", "B03"), 2

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        x = np.nan_to_num(batch)
        ctx = x.mean(axis=(1, 2, 3), keepdims=True)
        logit = 20.0 * (x[:, :1] - ctx) + 3.0 * x[:, 1:]
        p = 1.0 / (1.0 + np.exp(-logit))
        return np.concatenate([p, 1.0 - p], axis=1).astype(np.float32)


@st.composite
def chunkings(draw, length: int) -> tuple[int, ...]:
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, length - 1)), max_size=4))))
    edges = [0, *[c for c in cuts if c < length], length]
    return tuple(b - a for a, b in zip(edges[:-1], edges[1:], strict=True))


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 70), st.integers(1, 70), st.integers(4, 24), st.data())
def test_any_chunking_equals_the_numpy_core(h: int, w: int, window: int, data) -> None:
    overlap = data.draw(st.integers(0, (window - 1) // 2))
    rng = np.random.default_rng(h * 100 + w)
    img = rng.random((2, h, w), dtype=np.float32)
    if data.draw(st.booleans()):
        img[:, : h // 2, : w // 3] = np.nan
    model = WindowMeanModel()
    ref = predict_array(img, model, window=window, overlap=overlap, batch_size=3)
    ys, xs = data.draw(chunkings(h)), data.draw(chunkings(w))
    cube = make_cube(img, (ys, xs), bands=model.bands, crs=None)
    got = predict(cube, model, window=window, overlap=overlap, chunks=(ys, xs), batch_size=2)
    np.testing.assert_allclose(got.compute(scheduler="sync").values, ref, atol=1e-5)


def test_to_mask_rejects_bad_input_and_keeps_argmax() -> None:
    probs = xr.DataArray(
        np.array([[[0.2, np.nan]], [[0.5, np.nan]], [[0.3, np.nan]]], np.float32), dims=("class", "y", "x")
    )
    assert to_mask(probs).values.tolist() == [[1, 255]]
    assert to_mask(probs, nodata=9).values.tolist() == [[1, 9]]
    with pytest.raises(InvalidParameterError, match="class"):
        to_mask(probs.isel({"class": 0}))
    with pytest.raises(InvalidParameterError, match="nodata"):
        to_mask(probs, nodata=1)


def test_class_fractions_stream_over_blocks() -> None:
    values = np.array([[0, 1, 2, 255], [0, 0, 1, 255], [3, 0, 0, 0]], np.uint8)
    mask = xr.DataArray(
        da.from_array(values, chunks=(2, 3)), dims=("y", "x"), attrs={"classes": ["clear", "cloud", "shadow"]}
    )
    got = class_fractions(mask)
    assert got == pytest.approx(
        {"clear": 6 / 12, "cloud": 2 / 12, "shadow": 1 / 12, "3": 1 / 12, "nodata": 2 / 12}
    )


def test_real_georeferenced_patch_keeps_its_grid(shared_data) -> None:
    import rioxarray

    path = shared_data / "sen12mscr_nigeria" / "ROIs1868_summer_s2_cloudy_19_p30.tif"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    raw = rioxarray.open_rasterio(path, chunks=(13, 100, 100))
    cube = (raw.astype(np.float32) / 10_000).assign_coords(band=list(BAND_NAMES))
    cube = cube.rio.write_crs(raw.rio.crs)
    model = ThresholdModel()
    mask = to_mask(predict(cube, model, window=64, chunks=(100, 100)))
    assert mask.rio.crs == raw.rio.crs and mask.rio.transform() == raw.rio.transform()
    values = mask.values
    assert set(np.unique(values)) <= {0, 1, 2} and (values == 1).any() and (values == 0).any()
