"""Quick-look PNGs: size, overlay colours, legend, block mode of the mask, atomic writing."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import rioxarray
import xarray as xr
from PIL import Image

from s2mask.errors import InvalidParameterError, OutputExistsError
from s2mask.quicklook import OVERLAY, _coarse_mode, _mean_block, write_quicklook

H, W = 600, 900


def _dims(a, names):
    return xr.DataArray(a, dims=names)


@pytest.fixture
def scene():
    rng = np.random.default_rng(4)
    rgb = (0.05 + 0.1 * rng.random((3, H, W))).astype(np.float32)
    mask = np.zeros((H, W), np.uint8)
    mask[:200, :300] = 1  # cloud
    rgb[:, :200, :300] = 0.9
    mask[400:, 600:] = 2  # shadow
    mask[:, 880:] = 255  # nodata strip
    rgb_da = xr.DataArray(
        da.from_array(rgb, chunks=(3, 250, 333)),
        dims=("band", "y", "x"),
        coords={"band": ["B02", "B03", "B04"]},
    )
    mask_da = _dims(da.from_array(mask, chunks=(170, 400)), ("y", "x"))
    return rgb_da, mask_da, rgb, mask


def test_size_overlay_and_legend(tmp_path, scene):
    rgb_da, mask_da, _, _ = scene
    out = write_quicklook(rgb_da, mask_da, tmp_path / "ql.png", max_size=256)
    img = np.asarray(Image.open(out).convert("RGB"))
    w, h = 225, 150  # factor ceil(900 / 256) = 4
    assert img.shape[1] == w and img.shape[0] > h + 10  # image plus a legend strip
    picture, legend = img[:h], img[h:]
    # cloud pixels are tinted towards magenta, shadow towards amber, nodata darkened
    cloud = picture[10:40, 10:60].reshape(-1, 3).mean(axis=0)
    assert cloud[0] > 200 and cloud[2] > 200 and cloud[1] < cloud[0] - 60
    shadow = picture[120:145, 160:210].reshape(-1, 3).mean(axis=0)
    assert shadow[0] > shadow[2] + 60 and shadow[1] > shadow[2]
    assert picture[:, 222:].max() <= 60
    # the legend holds the exact swatch colours and some light text
    flat = legend.reshape(-1, 3)
    for value in (1, 2):
        assert (flat == OVERLAY[value].colour).all(axis=1).sum() > 20
    assert (flat.min(axis=1) > 200).sum() > 20
    assert [p.name for p in tmp_path.iterdir()] == ["ql.png"]


def test_rgb_only_has_no_legend_and_keeps_colour_order(tmp_path, scene):
    rgb_da, _, _, _ = scene
    red = rgb_da.copy(data=da.zeros_like(rgb_da.data)).load()
    red.loc[{"band": "B04"}] = 0.2
    out = write_quicklook(red, None, tmp_path / "rgb.png", max_size=300)
    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape == (200, 300, 3)
    assert img[..., 0].min() > 200 and img[..., 1].max() == 0 and img[..., 2].max() == 0


def test_small_image_is_not_upsampled_and_legend_wraps(tmp_path):
    rgb = _dims(np.full((3, 40, 60), 0.1, np.float32), ("band", "y", "x"))
    mask = _dims(np.zeros((40, 60), np.uint8), ("y", "x"))
    img = Image.open(write_quicklook(rgb, mask, tmp_path / "s.png"))
    assert img.width == 60 and img.height > 40 + 3 * 10  # four legend rows do not fit in one line


def test_block_mode_matches_numpy():
    rng = np.random.default_rng(5)
    a = rng.choice(np.array([0, 1, 2, 255], np.uint8), size=(37, 50), p=[0.4, 0.3, 0.2, 0.1])
    values = (0, 1, 2, 255)
    f = 4
    got = _coarse_mode(da.from_array(a, chunks=(10, 13)), f, values).compute()
    assert got.shape == (10, 13)
    for i in range(10):
        for j in range(13):
            block = a[i * f : (i + 1) * f, j * f : (j + 1) * f]
            counts = [(block == v).sum() for v in values]
            assert got[i, j] == values[int(np.argmax(counts))]


def test_cell_mean_ignores_nan_and_padding():
    a = np.arange(2 * 5 * 7, dtype=np.float32).reshape(2, 5, 7)
    a[0, 0, 0] = np.nan
    got = _mean_block(a, 3)
    assert got.shape == (2, 2, 3)
    assert got[0, 0, 0] == np.nanmean(a[0, :3, :3])
    assert got[1, 1, 2] == a[1, 3:, 6:].mean()  # the ragged corner averages only real pixels
    assert np.isnan(_mean_block(np.full((1, 2, 2), np.nan, np.float32), 2)).all()


def test_refuses_existing_before_work_and_checks_grid(tmp_path, scene):
    rgb_da, mask_da, _, _ = scene
    target = tmp_path / "ql.png"
    target.write_bytes(b"old")
    boom = rgb_da.copy(data=rgb_da.data.map_blocks(_explode, dtype=np.float32))
    with pytest.raises(OutputExistsError):
        write_quicklook(boom, mask_da, target)
    assert target.read_bytes() == b"old"
    with pytest.raises(InvalidParameterError, match="same grid"):
        write_quicklook(rgb_da, mask_da[:-1], tmp_path / "x.png")
    with pytest.raises(InvalidParameterError, match="B04"):
        write_quicklook(rgb_da.isel(band=[0, 1]), None, tmp_path / "x.png")
    with pytest.raises(RuntimeError, match="explode"):
        write_quicklook(boom, mask_da, target, overwrite=True)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ql.png"]


def _explode(block):
    raise RuntimeError("explode")


def test_gain_stretch_and_dn_input(tmp_path):
    dn = _dims(np.full((3, 20, 20), 1000, np.uint16), ("band", "y", "x"))  # reflectance 0.1
    img = np.asarray(Image.open(write_quicklook(dn, None, tmp_path / "g.png", stretch="gain", gain=5.0)))
    assert np.all(img == 128)  # 0.1 * 5 = 0.5 -> 128
    boom = dn.copy(data=da.from_array(dn.values).map_blocks(_explode, dtype=np.uint16))
    with pytest.raises(InvalidParameterError, match="stretch"):
        write_quicklook(boom, None, tmp_path / "h.png", stretch="log")
    with pytest.raises(InvalidParameterError, match="percentiles"):
        write_quicklook(boom, None, tmp_path / "h.png", percentiles=(98, 2))


def test_real_cloudsen12_patch(tmp_path, shared_data):
    from conftest import need

    base = shared_data / "cloudsen12_rgb_humanlabels" / "ROI_1746" / "high" / "cloudy"
    rgb = rioxarray.open_rasterio(need(base / "S2L1C.tif"), chunks=128)
    rgb = rgb.assign_coords(band=["B04", "B03", "B02"]) / 10000.0
    label = rioxarray.open_rasterio(need(base / "manual_hq.tif"), chunks=128).squeeze("band", drop=True)
    lut = np.array([0, 1, 1, 2] + [255] * 252, np.uint8)
    mask = label.copy(data=label.data.map_blocks(lambda b: lut[b.astype(np.uint8)], dtype=np.uint8))
    img = Image.open(write_quicklook(rgb, mask, tmp_path / "roi.png", max_size=256))
    assert img.width == 255 and img.height > 255
    arr = np.asarray(img.convert("RGB"))[:255]
    assert arr.std() > 20  # a real picture, not a flat colour


@pytest.mark.slow
def test_full_tile_quicklook_stays_small_in_memory(tmp_path, shared_data):
    import tracemalloc

    from conftest import need

    src = need(
        shared_data
        / "omnicloudmask_T19GBQ"
        / "S2A_MSIL2A_20170725T142751_N9999_R053_T19GBQ_20240410T040247_expected_output.tif"
    )
    raw = rioxarray.open_rasterio(src, chunks={"band": 1, "y": 1280, "x": 1280}).squeeze("band", drop=True)
    lut = np.array([0, 1, 1, 2] + [255] * 252, dtype=np.uint8)
    mask = raw.copy(data=raw.data.map_blocks(lambda b: lut[b], dtype=np.uint8))
    # a lazy 3 x 10980 x 10980 float32 image (1.4 GB if it were ever materialised)
    rgb = xr.DataArray(
        da.random.default_rng(0).random((3, 10980, 10980), chunks=(3, 1280, 1280), dtype=np.float32) * 0.3,
        dims=("band", "y", "x"),
    )
    tracemalloc.start()
    try:
        out = write_quicklook(rgb, mask, tmp_path / "tile.png", scheduler="threads")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    full = 3 * 10980 * 10980 * 4
    assert peak < full / 3, f"peak {peak / 1e6:.0f} MB; the full-resolution image is {full / 1e6:.0f} MB"
    img = Image.open(out)
    assert img.width == 999 and img.height > 999  # factor ceil(10980 / 1024) = 11
