"""The GeoTIFF reader: a real SEN12MS-CR scene and files written by s2mask.testing.products."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import need

from s2mask.bands import BAND_NAMES
from s2mask.errors import BandMismatchError, CorruptDataError, ProductFormatError, ProductNotFoundError
from s2mask.io import open_geotiff, open_product, product_kind
from s2mask.testing.products import write_geotiff

NIGERIA = "sen12mscr_nigeria/ROIs1868_summer_s2_cloudy_19_p30.tif"
T = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0)


@pytest.fixture(scope="module")
def refl() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.uniform(0.01, 0.6, (13, 60, 90)).astype(np.float32)


def test_real_scene_opens_with_esa_bands_and_crs(shared_data: Path):
    path = need(shared_data / NIGERIA)
    cube = open_product(path, chunks=100)
    assert product_kind(path) == "geotiff"
    assert tuple(cube.band.values) == BAND_NAMES
    assert cube.rio.crs.to_epsg() == 32631
    assert isinstance(cube.data, da.Array) and cube.chunks == ((13,), (100, 100, 56), (100, 100, 56))
    with rasterio.open(path) as ds:
        raw = ds.read().astype(np.float64)
        assert cube.rio.transform() == ds.transform
    values = cube.values
    np.testing.assert_allclose(values, np.clip(raw / 1e4, 0, 1), atol=1e-6)
    np.testing.assert_array_equal(values, open_product(path, chunks=4096).values)
    assert 0.02 < float(np.nanmean(values[1])) < 0.6  # real blue reflectance, not DN
    assert cube.attrs["product_id"] == "ROIs1868_summer_s2_cloudy_19_p30" and cube.attrs["level"] is None


def test_real_scene_band_subset_and_resampling(shared_data: Path):
    path = need(shared_data / NIGERIA)
    cube = open_product(path, bands=["B12", "B02"], resolution=20, resampling="average")
    assert list(cube.band.values) == ["B12", "B02"] and cube.shape == (2, 128, 128)
    full = open_product(path, bands=["B02"]).values[0]
    want = full.reshape(128, 2, 128, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(cube.values[1], want, atol=1e-6)


def test_descriptions_name_the_bands(tmp_path, refl):
    names = ("B02", "B03", "B04", "B08")
    p = write_geotiff(tmp_path / "four.tif", refl[:4], names, "EPSG:32633", T)
    cube = open_geotiff(p)
    assert list(cube.band.values) == list(names)
    assert np.nanmax(np.abs(cube.values - refl[:4])) <= 1.0001e-4
    assert cube.rio.crs.to_epsg() == 32633 and cube.rio.transform() == T


def test_thirteen_bands_without_descriptions_are_esa_order(tmp_path, refl):
    p = write_geotiff(tmp_path / "all.tif", refl, BAND_NAMES, "EPSG:32633", T, descriptions=False)
    cube = open_product(p, bands=["B8A"])
    np.testing.assert_allclose(cube.values[0], refl[BAND_NAMES.index("B8A")], atol=1.0001e-4)


def test_unnamed_bands_need_band_names(tmp_path, refl):
    p = write_geotiff(tmp_path / "six.tif", refl[:6], BAND_NAMES[:6], "EPSG:32633", T, descriptions=False)
    with pytest.raises(ProductFormatError, match="--bands"):
        open_product(p)
    names = ["B02", "B03", "B04", "B08", "B11", "B12"]
    cube = open_product(p, band_names=names, bands=["B11"])
    np.testing.assert_allclose(cube.values[0], refl[4], atol=1.0001e-4)
    with pytest.raises(BandMismatchError, match="3 band names"):
        open_product(p, band_names=names[:3])
    with pytest.raises(BandMismatchError, match="B05"):
        open_product(p, band_names=names, bands=["B05"])


def test_nodata_scale_and_offset(tmp_path, refl):
    mask = np.zeros(refl.shape[1:], bool)
    mask[:5, :7] = True
    p = write_geotiff(tmp_path / "nd.tif", refl[:3], ("B04", "B03", "B02"), "EPSG:32633", T, nodata_mask=mask)
    values = open_product(p).values
    assert np.isnan(values[:, mask]).all() and not np.isnan(values[:, ~mask]).any()
    scaled = open_product(p, scale=2e-4, offset=-0.1).values
    np.testing.assert_allclose(scaled[:, ~mask], np.clip(values[:, ~mask] * 2 - 0.1, 0, 1), atol=1e-5)


def test_file_nodata_value_is_honoured(tmp_path):
    dn = np.full((13, 12, 12), 1500, np.uint16)
    dn[:, 0, 0] = 9999
    p = tmp_path / "nd9999.tif"
    with rasterio.open(
        p,
        "w",
        driver="GTiff",
        width=12,
        height=12,
        count=13,
        dtype="uint16",
        crs="EPSG:32633",
        transform=T,
        nodata=9999,
    ) as ds:
        ds.write(dn)
    values = open_product(p).values
    assert np.isnan(values[:, 0, 0]).all() and np.allclose(values[:, 1:, 1:], 0.15)


def test_no_crs_is_a_format_error(tmp_path):
    p = tmp_path / "nocrs.tif"
    with rasterio.open(p, "w", driver="GTiff", width=8, height=8, count=13, dtype="uint16") as ds:
        ds.write(np.ones((13, 8, 8), np.uint16))
    with pytest.raises(ProductFormatError, match="no CRS"):
        open_product(p)


def test_resolution_resamples_projected_files(tmp_path, refl):
    p = write_geotiff(tmp_path / "r.tif", refl[:2], ("B02", "B03"), "EPSG:32633", T)
    coarse = open_product(p, resolution=30)
    assert coarse.shape == (2, 20, 30) and coarse.rio.transform().a == 30
    fine = open_product(p, resolution=5, resampling="nearest", chunks=(33, 47))
    np.testing.assert_array_equal(fine.values[:, ::2, ::2], open_product(p).values)


def test_broken_and_missing_files(tmp_path):
    with pytest.raises(ProductNotFoundError):
        open_product(tmp_path / "missing.tif")
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00garbage")
    with pytest.raises(CorruptDataError, match="bad.tif"):
        open_product(bad)
    jp2 = tmp_path / "band.jp2"
    with rasterio.open(
        jp2,
        "w",
        driver="JP2OpenJPEG",
        width=16,
        height=16,
        count=1,
        dtype="uint16",
        crs="EPSG:32633",
        transform=T,
    ) as ds:
        ds.write(np.ones((1, 16, 16), np.uint16))
    with pytest.raises(ProductFormatError, match="whole .SAFE"):
        open_product(jp2)
