"""Quick-look RGB read at the quick-look's size (overviews / JPEG 2000 levels) instead of full resolution."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from PIL import Image

from s2mask.bands import BAND_NAMES
from s2mask.errors import InvalidParameterError
from s2mask.io._lazy import reader_of
from s2mask.io.product import open_product
from s2mask.quicklook import _mean_block, preview_rgb, write_quicklook
from s2mask.testing.products import write_safe

RGB = ("B04", "B03", "B02")


@pytest.fixture(scope="module")
def safe(tmp_path_factory):
    """An L2A SAFE of 600 x 540 px with smooth spectra, a bright patch and a nodata corner."""
    h, w = 600, 540
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    refl = np.stack([0.05 + 0.2 * (yy / h) + 0.01 * b + 0.1 * (xx / w) for b in range(len(BAND_NAMES))])
    refl[:, 200:300, 100:260] = 0.8
    nodata = np.zeros((h, w), bool)
    nodata[:60, :90] = True
    return write_safe(tmp_path_factory.mktemp("safe"), refl, nodata_mask=nodata)


def test_reader_of_only_for_unchanged_reader_cubes(safe):
    cube = open_product(safe, bands=RGB, chunks=256)
    assert reader_of(cube) is not None
    assert reader_of(cube.sel(band=["B04"])) is None
    assert reader_of(cube * 2) is None
    assert reader_of(xr.DataArray(np.zeros((3, 4, 4)), dims=("band", "y", "x"))) is None


def test_preview_matches_cell_means_of_full_read(safe):
    cube = open_product(safe, bands=RGB, chunks=256)
    small = preview_rgb(cube, max_size=100)  # factor 6 -> 100 x 90
    assert small.shape == (3, 100, 90)
    assert list(small["band"].values) == list(RGB)
    full = cube.values
    expected = _mean_block(full, 6)
    inside = np.isfinite(small.values) & np.isfinite(expected)
    assert inside.mean() > 0.9
    diff = np.abs(small.values[inside] - expected[inside])
    # equal up to resampling: edges of the patch and of the nodata corner blur differently
    assert np.percentile(diff, 95) < 0.01 and diff.mean() < 0.01
    assert np.isnan(small.values[:, 0, 0]).all()  # the nodata corner stays nodata
    assert small.values[:, 40, 30].mean() > 0.7  # the bright patch is there


def test_preview_is_a_no_op_for_computed_or_small_cubes(safe):
    cube = open_product(safe, bands=RGB, chunks=256)
    assert preview_rgb(cube * 1.0, max_size=100) is not None
    assert preview_rgb(cube * 1.0, max_size=100).shape == cube.shape
    assert preview_rgb(cube, max_size=4096) is cube


def test_quicklook_from_preview_equals_size_of_full_path(safe, tmp_path):
    cube = open_product(safe, bands=RGB, chunks=256)
    mask = xr.DataArray(np.zeros(cube.shape[1:], np.uint8), dims=("y", "x"))
    mask[200:300, 100:260] = 1
    mask[:60, :90] = 255
    a = write_quicklook(preview_rgb(cube, max_size=100), mask, tmp_path / "a.png", max_size=100)
    b = write_quicklook(cube, mask, tmp_path / "b.png", max_size=100)
    ia, ib = np.asarray(Image.open(a).convert("RGB")), np.asarray(Image.open(b).convert("RGB"))
    assert ia.shape == ib.shape
    assert np.abs(ia.astype(int) - ib.astype(int)).mean() < 8  # same picture up to resampling
    with pytest.raises(InvalidParameterError, match="already reduced"):
        write_quicklook(preview_rgb(cube, max_size=100), mask[:-6], tmp_path / "c.png", max_size=100)


def test_run_writes_quicklook_from_preview(tmp_path, monkeypatch):
    from s2mask.io import _lazy
    from s2mask.model import load_model
    from s2mask.run import RunOptions, run_product

    h, w = 1104, 1032  # over the 1024 px quick-look: factor 2 (multiples of 6 for the 60 m bands)
    refl = np.full((len(BAND_NAMES), h, w), 0.08, np.float32)
    refl[:, 300:600, 200:700] = 0.85
    product = write_safe(tmp_path / "in", refl)
    calls = []
    real = _lazy.LazyReflectance.preview

    def spy(self, shape, bands=None):
        calls.append((shape, [self.sources[i].path.rsplit("_", 2)[-2] for i in bands]))
        return real(self, shape, bands)

    monkeypatch.setattr(_lazy.LazyReflectance, "preview", spy)
    from s2mask.io import safe as safe_reader

    opened = []
    real_open = safe_reader.to_dataarray

    def counting_open(reader, **kw):
        opened.append(kw["band_names"])
        return real_open(reader, **kw)

    monkeypatch.setattr(safe_reader, "to_dataarray", counting_open)
    run_product(product, tmp_path / "mask.tif", model=load_model("s2-9"), options=RunOptions(progress=False))
    assert calls == [((552, 516), ["B04", "B03", "B02"])]  # only the true colour, from the product's reader
    assert len(opened) == 1  # the product is opened once, for the model
    picture = Image.open(tmp_path / "mask.png")
    assert picture.width == 516 and picture.height > 552  # image plus legend


def test_files_without_overviews_keep_the_block_average_path(tmp_path):
    from affine import Affine

    from s2mask.testing.products import write_geotiff

    refl = np.full((3, 300, 300), 0.2, np.float32)
    path = write_geotiff(
        tmp_path / "rgb.tif", refl, list(RGB), "EPSG:32631", Affine(10, 0, 300000, 0, -10, 5000000)
    )
    cube = open_product(path, chunks=128)
    assert reader_of(cube) is not None and not reader_of(cube).has_overviews()
    assert preview_rgb(cube, max_size=100) is cube


def test_read_preview_is_the_readers_contract(safe):
    from s2mask.io import read_preview

    cube = open_product(safe, bands=("B02", "B03", "B04", "B08"), chunks=256)
    small = read_preview(cube, bands=RGB, shape=(100, 90))
    assert list(small["band"].values) == list(RGB) and small.shape == (3, 100, 90)
    np.testing.assert_allclose(
        small.values, read_preview(open_product(safe, bands=RGB), bands=RGB, shape=(100, 90))
    )
    assert read_preview(cube * 1.0, bands=RGB, shape=(100, 90)) is None  # computed on: the files say nothing
    assert read_preview(cube, bands=("B11",), shape=(100, 90)) is None  # not among the cube's bands
