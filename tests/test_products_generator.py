"""The SAFE/GeoTIFF generator writes what real products hold: layout, XML, lossless JP2 DN."""

from __future__ import annotations

import xml.etree.ElementTree as ET
import zipfile
from datetime import datetime

import numpy as np
import pytest
import rasterio

from s2mask.bands import BAND_NAMES, BANDS
from s2mask.errors import InvalidParameterError, OutputExistsError
from s2mask.io._xml import parse_product_metadata, parse_tile_metadata
from s2mask.testing.products import (
    DEFAULT_TRANSFORM,
    L2A_RESOLUTION_BANDS,
    baseline_offset,
    block_mean,
    reflectance_to_dn,
    safe_name,
    write_geotiff,
    write_safe,
)

H, W = 60, 96


@pytest.fixture(scope="module")
def refl() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.uniform(0.0, 0.9, (13, H, W)).astype(np.float32)


def test_baseline_offset_and_dn():
    assert baseline_offset("02.08") == 0 and baseline_offset("03.01") == 0
    assert baseline_offset("04.00") == -1000 and baseline_offset("05.11") == -1000
    with pytest.raises(InvalidParameterError):
        baseline_offset("4")
    dn = reflectance_to_dn(np.array([0.0, 0.1234, 7.0, np.nan]), offset=-1000)
    assert dn.tolist() == [1000, 2234, 65535, 0]
    assert reflectance_to_dn(np.array([0.0]), offset=0).tolist() == [1]  # 0 is reserved for nodata


def test_l1c_layout_names_and_lossless_dn(tmp_path, refl):
    date = datetime(2021, 6, 2, 10, 20, 31)
    p = write_safe(
        tmp_path, refl, level="L1C", baseline="04.00", tile_id="T32TQM", date=date, crs="EPSG:32632"
    )
    assert p.name == safe_name(level="L1C", baseline="04.00", tile_id="T32TQM", date=date) + ".SAFE"
    assert p.name == "S2B_MSIL1C_20210602T102031_N0400_R022_T32TQM_20210602T102031.SAFE"
    for name in ("manifest.safe", "MTD_MSIL1C.xml", "INSPIRE.xml"):
        assert (p / name).is_file()
    (granule,) = (p / "GRANULE").iterdir()
    assert granule.name.startswith("L1C_T32TQM_")
    jp2s = sorted(f.name for f in (granule / "IMG_DATA").glob("*.jp2"))
    assert jp2s == sorted(f"T32TQM_20210602T102031_{b}.jp2" for b in BAND_NAMES)
    for band in BAND_NAMES:
        factor = BANDS[band].resolution // 10
        with rasterio.open(granule / "IMG_DATA" / f"T32TQM_20210602T102031_{band}.jp2") as ds:
            assert ds.driver == "JP2OpenJPEG" and ds.dtypes[0] == "uint16"
            assert ds.shape == (H // factor, W // factor)
            assert ds.crs.to_epsg() == 32632 and ds.transform.a == 10 * factor
            dn = ds.read(1)
        want = reflectance_to_dn(block_mean(refl[BAND_NAMES.index(band)], factor), offset=-1000)
        np.testing.assert_array_equal(dn, want)  # lossless


def test_l2a_layout_by_resolution(tmp_path, refl):
    p = write_safe(tmp_path, refl, level="L2A", baseline="05.09")
    (img,) = (p / "GRANULE").glob("L2A_*/IMG_DATA")
    for res, members in L2A_RESOLUTION_BANDS.items():
        bands = sorted(f.name.split("_")[-2] for f in (img / f"R{res}m").glob("*.jp2"))
        assert bands == sorted(members)
        assert all(f.name.endswith(f"_{res}m.jp2") for f in (img / f"R{res}m").iterdir())
    assert not list(img.rglob("*_B10_*"))
    with (
        rasterio.open(next(img.glob("R20m/*_B01_20m.jp2"))) as a,
        rasterio.open(next(img.glob("R60m/*_B01_60m.jp2"))) as b,
    ):
        assert a.transform.a == 20 and b.transform.a == 60
        np.testing.assert_array_equal(a.read(1), np.repeat(np.repeat(b.read(1), 3, axis=0), 3, axis=1))
    lean = write_safe(tmp_path / "lean", refl, level="L2A", all_resolutions=False)
    assert len(list(lean.rglob("*.jp2"))) == 12  # each band once, at its native resolution


@pytest.mark.parametrize(("level", "baseline"), [("L1C", "02.08"), ("L2A", "03.01"), ("L2A", "05.09")])
def test_metadata_xml_is_real_structure(tmp_path, refl, level, baseline):
    p = write_safe(tmp_path, refl, level=level, baseline=baseline)
    mtd = (p / f"MTD_MSI{level}.xml").read_bytes()
    root = ET.fromstring(mtd)
    assert root.tag.endswith(f"Level-{level[1:]}_User_Product")
    meta = parse_product_metadata(mtd)
    assert meta.level == level and meta.processing_baseline == baseline and meta.quantification == 10000
    assert meta.nodata == 0 and meta.saturated == 65535
    assert meta.product_uri == p.name
    assert set(meta.offsets.values()) == ({-1000.0} if baseline >= "04.00" else set())
    tile = parse_tile_metadata(next(p.glob("GRANULE/*/MTD_TL.xml")).read_bytes())
    assert tile.crs == "EPSG:32631"
    assert tile.sizes == {10: (H, W), 20: (H // 2, W // 2), 60: (H // 6, W // 6)}
    assert tile.origins[20] == (DEFAULT_TRANSFORM.c, DEFAULT_TRANSFORM.f)
    manifest = (p / "manifest.safe").read_text()
    assert "xfdu:XFDU" in manifest and f"./MTD_MSI{level}.xml" in manifest and ".jp2" in manifest


def test_zipped_product_holds_the_safe_folder(tmp_path, refl):
    p = write_safe(tmp_path, refl, level="L1C", zipped=True, product_id="S2A_MSIL1C_TEST")
    assert p.name == "S2A_MSIL1C_TEST.SAFE.zip"
    with zipfile.ZipFile(p) as zf:
        names = zf.namelist()
    assert "S2A_MSIL1C_TEST.SAFE/MTD_MSIL1C.xml" in names
    assert sum(n.endswith(".jp2") for n in names) == 13
    assert [f.name for f in tmp_path.iterdir()] == [p.name]  # no temp leftovers


def test_refuses_bad_inputs_and_existing_output(tmp_path, refl):
    with pytest.raises(InvalidParameterError, match="multiples of 6"):
        write_safe(tmp_path, refl[:, :50])
    with pytest.raises(InvalidParameterError, match="one plane per band"):
        write_safe(tmp_path, refl[:4])
    with pytest.raises(InvalidParameterError, match="level"):
        write_safe(tmp_path, refl, level="L1B")
    p = write_safe(tmp_path, refl, level="L1C", all_resolutions=False)
    with pytest.raises(OutputExistsError):
        write_safe(tmp_path, refl, level="L1C")
    assert write_safe(tmp_path, refl, level="L1C", overwrite=True) == p


def test_nodata_mask_becomes_dn_zero(tmp_path, refl):
    mask = np.zeros((H, W), bool)
    mask[:6, :6] = True
    p = write_safe(tmp_path, refl, level="L1C", nodata_mask=mask)
    with rasterio.open(next(p.rglob("*_B01.jp2"))) as ds:  # 60 m: one pixel covers the corner
        dn = ds.read(1)
    assert dn[0, 0] == 0 and (dn.ravel()[1:] > 0).all()


def test_write_geotiff(tmp_path, refl):
    p = write_geotiff(tmp_path / "x.tif", refl[:3], ["B4", "B3", "B2"], "EPSG:32631", DEFAULT_TRANSFORM)
    with rasterio.open(p) as ds:
        assert ds.count == 3 and ds.dtypes[0] == "uint16" and ds.nodata == 0
        assert ds.descriptions == ("B04", "B03", "B02")
        np.testing.assert_array_equal(ds.read(), reflectance_to_dn(refl[:3]))
    with pytest.raises(OutputExistsError):
        write_geotiff(p, refl[:3], ["B4", "B3", "B2"], "EPSG:32631", DEFAULT_TRANSFORM)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["x.tif"]
