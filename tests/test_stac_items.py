"""Parsing every real Sentinel-2 STAC item in ../shared/data/stac_items (offline, metadata only)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pystac
import pytest

from s2mask.bands import BAND_NAMES, DEFAULT_BANDS
from s2mask.errors import ProductFormatError, StacError
from s2mask.io.stac import (
    PRESETS,
    asset_key_for_band,
    band_radiometry,
    check_href_schemes,
    find_preset,
    item_crs,
    item_level,
    parse_item,
    preset_for_item,
    processing_baseline,
    sign_item,
)


def real_items(shared_data: Path) -> list[tuple[str, dict]]:
    out = []
    for path in sorted((shared_data / "stac_items").rglob("*.*json")):
        doc = json.loads(path.read_text())
        if doc.get("type") == "FeatureCollection":
            out += [(f"{path.name}#{i}", f) for i, f in enumerate(doc["features"])]
        elif doc.get("type") == "Feature":
            out.append((path.name, doc))
    return out


@pytest.fixture(scope="module")
def raw_items(shared_data: Path) -> dict[str, dict]:
    return dict(real_items(shared_data))


@pytest.fixture(scope="module")
def items(raw_items: dict[str, dict]) -> list[tuple[str, pystac.Item]]:
    found = [(name, pystac.Item.from_dict(copy.deepcopy(d))) for name, d in raw_items.items()]
    assert len(found) >= 40, "expected the 22 odc-stac and 20 pystac-client items"
    return found


def _expected_keys(item: pystac.Item) -> dict[str, str]:
    """The asset key per band as each provider names it (ESA keys or Earth Search common names)."""
    es = {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1",
          "B06": "rededge2", "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B09": "nir09",
          "B11": "swir16", "B12": "swir22"}  # fmt: skip
    return es if "blue" in item.assets else {b: b for b in es}


def test_every_real_item_parses_with_all_its_bands(
    items: list[tuple[str, pystac.Item]], raw_items: dict[str, dict]
) -> None:
    for name, item in items:
        bands = [b for b in BAND_NAMES if b != "B10"]  # no L2A asset holds cirrus
        info = parse_item(item, bands=bands)
        assert dict(info.assets) == _expected_keys(item), name
        # the raw JSON has proj:epsg; pystac migrates it to proj:code on reading
        assert info.crs == f"EPSG:{raw_items[name]['properties']['proj:epsg']}", name
        assert info.level in ("L1C", "L2A")
        assert info.id == item.id and info.cloud_cover == item.properties.get("eo:cloud_cover")
        for band, rad in info.radiometry.items():
            assert rad.scale == pytest.approx(1e-4), (name, band)
            assert rad.nodata == 0, (name, band)


def test_levels_and_baselines_of_real_items(items: list[tuple[str, pystac.Item]]) -> None:
    seen = {}
    for name, item in items:
        seen[name] = (item_level(item), processing_baseline(item))
    assert seen["sentinel-2-l1c__S2B_24MUV_20250731_0_L1C.json"] == ("L1C", "05.11")
    assert seen["sentinel-2-c1-l2a__S2B_T24MUV_20250731T130245_L2A.json"] == ("L2A", "05.11")
    assert seen["S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531.json"] == ("L2A", "02.12")
    # Earth Search v0 has no s2:processing_baseline: read from sentinel:product_id ..._N0214_...
    assert seen["S2A_28QCH_20200714_0_L2A.json"] == ("L2A", "02.14")


@pytest.mark.parametrize(
    ("file", "offset", "source"),
    [
        # Collection 1: raster:bands says offset -0.1
        ("sentinel-2-c1-l2a__S2B_T24MUV_20250731T130245_L2A.json", -0.1, "raster:bands"),
        # L1C from baseline 04.00: RADIO_ADD_OFFSET in raster:bands
        ("sentinel-2-l1c__S2B_24MUV_20250731_0_L1C.json", -0.1, "raster:bands"),
        # Earth Search sentinel-2-l2a harmonised (boa_offset_applied) although raster:bands says -0.1
        ("sentinel-2-l2a__S2B_24MUV_20250731_0_L2A.json", 0.0, "earthsearch:boa_offset_applied"),
        # Planetary Computer, baseline 02.12, no raster:bands
        (
            "sentinel-2-l2a__S2A_MSIL2A_20190101T000001_R116_T59VPC_20201007T214653.json",
            0.0,
            "baseline 02.12",
        ),
        # raster:bands with nodata only: the baseline decides
        ("S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531_raster_ext.json", 0.0, "baseline 02.12"),
        ("S2A_28QCH_20200714_0_L2A.json", 0.0, "baseline 02.14"),
    ],
)
def test_offsets_come_from_item_metadata(
    items: list[tuple[str, pystac.Item]], file: str, offset: float, source: str
) -> None:
    item = dict(items)[file]
    for band in DEFAULT_BANDS:
        rad = band_radiometry(item, asset_key_for_band(item, band))
        assert rad.offset == pytest.approx(offset) and rad.source == source


def _pc_item(items: list[tuple[str, pystac.Item]]) -> pystac.Item:
    name = "sentinel-2-l2a__S2A_MSIL2A_20190101T000001_R116_T59VPC_20201007T214653.json"
    return dict(items)[name].clone()


def test_baseline_04_without_raster_bands_means_offset(items: list[tuple[str, pystac.Item]]) -> None:
    item = _pc_item(items)
    item.properties["s2:processing_baseline"] = "04.00"
    assert band_radiometry(item, "B04").offset == pytest.approx(-0.1)
    # the date is never used: a 2019 acquisition with baseline 05.09 (reprocessed) gets the offset
    item.properties["s2:processing_baseline"] = "05.09"
    assert band_radiometry(item, "B04").offset == pytest.approx(-0.1)
    del item.properties["s2:processing_baseline"]
    item.properties["s2:product_uri"] = "S2A_MSIL2A_20190101T000001_N0400_R116_T59VPC_20221007T214653.SAFE"
    assert processing_baseline(item) == "04.00"


def test_no_baseline_and_no_raster_bands_is_a_clear_error(items: list[tuple[str, pystac.Item]]) -> None:
    item = _pc_item(items)
    for key in [k for k in item.properties if k.startswith("s2:")]:
        del item.properties[key]
    item.id = "no-baseline"
    with pytest.raises(ProductFormatError, match="processing baseline"):
        band_radiometry(item, "B04")


def test_proj_code_is_preferred_and_missing_crs_is_an_error(items: list[tuple[str, pystac.Item]]) -> None:
    item = _pc_item(items)
    item.properties.pop("proj:code", None)
    item.properties["proj:epsg"] = 32659
    assert item_crs(item) == "EPSG:32659"
    item.properties["proj:code"] = "EPSG:32759"  # proj:code wins
    assert item_crs(item) == "EPSG:32759"
    del item.properties["proj:epsg"]
    del item.properties["proj:code"]
    with pytest.raises(ProductFormatError, match="proj:code or proj:epsg"):
        item_crs(item)
    item.assets["B04"].extra_fields["proj:epsg"] = 32659  # asset-level projection is enough
    assert item_crs(item) == "EPSG:32659"


def test_missing_band_names_the_assets(items: list[tuple[str, pystac.Item]]) -> None:
    item = _pc_item(items)
    with pytest.raises(ProductFormatError, match="no asset for band B10.*AOT, B01"):
        asset_key_for_band(item, "B10")


def test_band_found_through_eo_bands_when_key_is_unusual(items: list[tuple[str, pystac.Item]]) -> None:
    item = _pc_item(items)
    item.assets["band-four"] = item.assets.pop("B04")
    assert asset_key_for_band(item, "b4") == "band-four"


def test_presets_and_provider_detection(items: list[tuple[str, pystac.Item]]) -> None:
    assert set(PRESETS) == {
        "earth-search/sentinel-2-l2a",
        "earth-search/sentinel-2-c1-l2a",
        "earth-search/sentinel-2-l1c",
        "planetary-computer/sentinel-2-l2a",
    }
    pc = find_preset(url="https://planetarycomputer.microsoft.com/api/stac/v1/", collection="sentinel-2-l2a")
    assert pc is not None and pc.sign and pc.asset_keys["B8A"] == "B8A"
    es = find_preset(url="https://earth-search.aws.element84.com/v1", collection="sentinel-2-c1-l2a")
    assert es is not None and es.asset_keys["B8A"] == "nir08" and not es.sign
    assert find_preset(url="http://127.0.0.1:9/", collection="sentinel-2-l2a") is None
    by_name = dict(items)
    pc_item = by_name["sentinel-2-l2a__S2A_MSIL2A_20190101T000001_R116_T59VPC_20201007T214653.json"]
    es_item = by_name["sentinel-2-l2a__S2B_24MUV_20250731_0_L2A.json"]
    assert preset_for_item(pc_item).name == "planetary-computer/sentinel-2-l2a"
    assert preset_for_item(es_item).name == "earth-search/sentinel-2-l2a"


def test_href_schemes_are_checked(items: list[tuple[str, pystac.Item]]) -> None:
    item = copy.deepcopy(dict(items)["sentinel-2-l1c__S2B_24MUV_20250731_0_L1C.json"])
    check_href_schemes(item, ["red"])  # s3:// is allowed by default
    with pytest.raises(StacError, match="scheme 's3', which is not allowed"):
        check_href_schemes(item, ["red"], allowed_schemes=("https",))
    item.assets["red"].href = "ftp://example.invalid/B04.tif"
    with pytest.raises(StacError, match="'ftp'"):
        check_href_schemes(item, ["red"])
    item.assets["red"].href = "/data/B04.tif"
    check_href_schemes(item, ["red"], allowed_schemes=("file",))
    with pytest.raises(StacError, match="'file'"):
        check_href_schemes(item, ["red"], allowed_schemes=("https",))


def test_planetary_computer_items_are_signed_when_the_package_is_there(
    items: list[tuple[str, pystac.Item]], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import sys
    import types

    item = _pc_item(items)
    preset = PRESETS["planetary-computer/sentinel-2-l2a"]
    monkeypatch.setitem(sys.modules, "planetary_computer", None)  # not installed
    with caplog.at_level("WARNING", logger="s2mask.io.stac"):
        assert sign_item(item, preset) is item
    assert "pip install planetary-computer" in caplog.text

    fake = types.ModuleType("planetary_computer")

    def sign(it: pystac.Item) -> pystac.Item:
        signed = it.clone()
        for asset in signed.assets.values():
            asset.href += "?sig=token"
        return signed

    fake.sign = sign  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "planetary_computer", fake)
    signed = sign_item(item, preset)
    assert signed.assets["B04"].href.endswith("?sig=token") and not item.assets["B04"].href.endswith("token")
    es = PRESETS["earth-search/sentinel-2-c1-l2a"]
    assert sign_item(item, es) is item  # Earth Search needs no signing
