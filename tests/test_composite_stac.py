"""`composite_stac` against a local STAC API (rustac serve) equals `composite_products` on the same pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds

from s2mask.bands import BAND_NAMES, DEFAULT_BANDS
from s2mask.composite import CompositeOptions, composite_products, composite_stac
from s2mask.errors import EmptySearchError
from s2mask.testing.models import ThresholdModel
from tests.stac_server import (
    block_internet,  # noqa: F401 - fixture
    rustac_server,
    shaped_item,
    shared_item,
    synthetic_reflectance,
    to_dn,
    write_band_cogs,
)

pytestmark = [
    pytest.mark.usefixtures("block_internet"),
    pytest.mark.filterwarnings("ignore:Could not parse bucket:UserWarning"),
]

CRS = "EPSG:32633"
ORIGIN = from_origin(500000, 5080000, 10, 10)
SIZE = 96
IDX = {b: i for i, b in enumerate(BAND_NAMES)}
SCENES = [  # id, datetime, eo:cloud_cover, seed
    ("S2A_T33TWL_20240601_L2A", "2024-06-01T10:00:00Z", 20.0, 1),
    ("S2B_T33TWL_20240611_L2A", "2024-06-11T10:00:00Z", 35.0, 2),
    ("S2A_T33TWL_20240621_L2A", "2024-06-21T10:00:00Z", 95.0, 3),  # dropped by max_cloud
    ("S2B_T33TWL_20240701_L2A", "2024-07-01T10:00:00Z", 10.0, 4),
]


@pytest.fixture(scope="module")
def catalogue(shared_data: Path, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("composite_stac")
    template = shared_item(shared_data, "es-l2a")
    items, tifs = [], []
    for item_id, when, cloud, seed in SCENES:
        refl = synthetic_reflectance(SIZE, seed)
        dn = {b: to_dn(refl[IDX[b]], offset_dn=0) for b in DEFAULT_BANDS}
        hrefs = write_band_cogs(tmp / item_id, dn, transform=ORIGIN, crs=CRS)
        items.append(shaped_item(
            template, item_id=item_id, when=when, cloud_cover=cloud, hrefs=hrefs, transform=ORIGIN,
            shapes={b: a.shape for b, a in dn.items()}, crs=CRS,
        ))  # fmt: skip
        tif = tmp / f"S2X_MSIL2A_{when[:10].replace('-', '')}T100000_N0510_R022_T33TWL_{item_id}.tif"
        profile = {"driver": "GTiff", "width": SIZE, "height": SIZE, "count": len(DEFAULT_BANDS),
                   "dtype": "uint16", "crs": CRS, "transform": ORIGIN, "nodata": 0}  # fmt: skip
        with rasterio.open(tif, "w", **profile) as dst:
            dst.write(np.stack([dn[b] for b in DEFAULT_BANDS]))
            dst.descriptions = tuple(DEFAULT_BANDS)
        tifs.append(tif)
    # a bbox inside the tile, away from its edges
    left, top = ORIGIN.c + 80, ORIGIN.f - 80
    right, bottom = ORIGIN.c + SIZE * 10 - 120, ORIGIN.f - SIZE * 10 + 100
    bbox = transform_bounds(CRS, "EPSG:4326", left, bottom, right, top)
    return {"items": items, "tifs": tifs, "bbox": bbox, "tmp": tmp}


def test_stac_composite_equals_products_composite(catalogue, tmp_path):
    model = ThresholdModel(DEFAULT_BANDS)
    options = CompositeOptions(method="median", buffer=1, quicklook=False)
    with rustac_server(catalogue["items"], catalogue["tmp"] / "server") as url:
        run = composite_stac(
            url=url, collection="sentinel-2-l2a", bbox=",".join(map(str, catalogue["bbox"])),
            date="2024-05-01/2024-07-31", out=tmp_path / "stac.tif", model=model, max_cloud=50, options=options,
        )  # fmt: skip
        with pytest.raises(EmptySearchError):
            composite_stac(
                url=url, collection="sentinel-2-l2a", bbox=catalogue["bbox"], date="2023-01-01/2023-02-01",
                out=tmp_path / "none.tif", model=model, options=options,
            )  # fmt: skip
    kept = [s[0] for s in SCENES if s[2] <= 50]
    assert run.scenes == tuple(kept)
    local = CompositeOptions(
        method="median", buffer=1, quicklook=False, bbox=catalogue["bbox"], bbox_crs="EPSG:4326"
    )
    tifs = [t for t, s in zip(catalogue["tifs"], SCENES, strict=True) if s[2] <= 50]
    ref = composite_products(tifs, tmp_path / "local.tif", model=model, options=local)
    with rasterio.open(run.cog) as a, rasterio.open(ref.cog) as b:
        assert a.crs.to_epsg() == 32633 and a.transform == b.transform and a.shape == b.shape
        assert a.shape[0] < SIZE and a.shape[1] < SIZE  # cropped to the bbox
        assert a.descriptions == (*DEFAULT_BANDS, "count")
        assert a.tags()["SCENE_1"] == kept[0] and a.tags()["SCENE_3_DATE"].startswith("2024-07-01")
        da_, db = a.read(), b.read()
    np.testing.assert_array_equal(da_[-1], db[-1])  # same clear observations
    # the two readers scale DN in float32 slightly differently: equal up to 1 DN
    assert np.abs(da_[:-1].astype(int) - db[:-1]).max() <= 1
    count = da_[-1]
    assert count.max() == len(kept) and (count > 0).mean() > 0.9


def test_cli_composite_stac_max_cloud_limit_and_target_date(catalogue, tmp_path):
    """`s2mask composite --stac-bbox` with --max-cloud, --limit and best-pixel's --target-date."""
    from click.testing import CliRunner

    from s2mask.cli import cli

    bbox = ",".join(map(str, catalogue["bbox"]))
    with rustac_server(catalogue["items"], catalogue["tmp"] / "server-cli") as url:
        base = ["composite", "--stac-bbox", bbox, "--date", "2024-05-01/2024-07-31", "--url", url, "-q"]
        runs = {
            "limited": ["--max-cloud", "40", "--limit", "2"],
            "dated": ["--max-cloud", "40", "--method", "best-pixel", "--target-date", "2024-07-02"],
        }
        tags = {}
        for name, extra in runs.items():
            out = tmp_path / f"{name}.tif"
            result = CliRunner().invoke(cli, [*base, "-o", str(out), *extra])
            assert result.exit_code == 0, result.output
            with rasterio.open(out) as src:
                tags[name] = src.tags()
                data = src.read()
                desc = src.descriptions
            tags[name]["_data"], tags[name]["_desc"] = data, desc
    low_cloud = {s[0] for s in SCENES if s[2] <= 40}
    limited = [v for k, v in tags["limited"].items() if k.startswith("SCENE_") and k[6:].isdigit()]
    assert len(limited) == 2 and set(limited) <= low_cloud  # at most 2 items, none above 40 % cloud
    dated = tags["dated"]
    scenes = [dated[f"SCENE_{i}"] for i in range(1, 4) if f"SCENE_{i}" in dated]
    assert set(scenes) == low_cloud
    # the target date reaches best-pixel (it breaks ties of the model's clear probability)
    assert dated["TARGET_DATE"].startswith("2024-07-02") and "TARGET_DATE" not in tags["limited"]
    src_band = [i for i, d in enumerate(dated["_desc"]) if "source" in (d or "").lower()]
    assert src_band, dated["_desc"]
    source = dated["_data"][src_band[0]]
    assert set(np.unique(source[source > 0])) <= set(range(1, len(scenes) + 1))  # 1-based, 0 = none
