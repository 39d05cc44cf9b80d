"""Lazy loading of STAC items with local COGs, and `run_stac` end to end against rustac serve.

The masks written through STAC must equal those of ``s2mask run`` (``run_product``) on
the same pixels written as a GeoTIFF product.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pystac
import pytest
import rasterio
from rasterio.transform import from_origin

from s2mask.bands import BAND_NAMES, DEFAULT_BANDS
from s2mask.errors import EmptySearchError, OutputExistsError, ProductNotFoundError, StacError
from s2mask.io.stac import open_stac_item
from s2mask.model.weights import ModelCard
from s2mask.run import RunOptions
from s2mask.stac import INDEX_NAME, describe_plan, mask_fractions, run_stac
from s2mask.testing.models import ThresholdModel
from tests.stac_server import (
    RustacServer,
    block_internet,  # noqa: F401 - fixture
    shaped_item,
    shared_item,
    synthetic_reflectance,
    to_dn,
    write_band_cogs,
    write_cog,
)

pytestmark = [
    pytest.mark.usefixtures("block_internet"),
    pytest.mark.filterwarnings("ignore:Could not parse bucket:UserWarning"),  # pystac storage-ext migration
]

CRS = "EPSG:32633"
ORIGIN = from_origin(500000, 5080000, 10, 10)
SIZE = 96
BANDS = DEFAULT_BANDS
IDX = {b: i for i, b in enumerate(BAND_NAMES)}
# template -> DN offset that its metadata announces (c1: raster:bands -0.1; es: boa applied; pc: baseline 02.12)
OFFSET_DN = {"c1-l2a": 1000, "es-l2a": 0, "pc-l2a": 0}


class CardedThreshold(ThresholdModel):
    """ThresholdModel with a model card, as ``run_product`` reads ``model.card``."""

    def __init__(self) -> None:
        super().__init__(BANDS)
        self.card = ModelCard(name="threshold", bands=BANDS, window_size=64)


def engine_run_one(model: Any, *, overwrite: bool = False) -> Callable[[Any, Path], dict]:
    """The per-cube pipeline of ``s2mask run``: predict -> to_mask -> COG + summary + quick-look."""
    from s2mask.engine import predict
    from s2mask.io.cog import mask_colormap, write_cog
    from s2mask.mask import to_mask
    from s2mask.quicklook import write_quicklook
    from s2mask.summary import mask_summary, write_summary

    def run_one(cube: Any, out: Path) -> dict:
        mask = to_mask(predict(cube, model, window=64, overlap=8))
        write_cog(mask, out, nodata=255, colormap=mask_colormap(), overwrite=overwrite, progress=False)
        summary = mask_summary(mask, product_id=cube.attrs["product_id"])
        write_summary(out.with_suffix(".json"), summary, overwrite=overwrite)
        write_quicklook(
            cube.sel(band=["B04", "B03", "B02"]), mask, out.with_suffix(".png"), overwrite=overwrite
        )
        return summary

    return run_one


def make_item(
    shared_data: Path, tmp: Path, template: str, item_id: str, *, when: str = "2024-06-10T10:00:00Z",
    cloud: float | None = 20.0, seed: int = 0, refl: np.ndarray | None = None, half_res: tuple[str, ...] = (),
    nodata: np.ndarray | None = None,
) -> tuple[dict, np.ndarray]:  # fmt: skip
    """Write COGs for a scene and return the shaped item and the scene's reflectance (13 bands).

    ``nodata`` (bool, y/x) marks pixels written as DN 0.
    """
    refl = synthetic_reflectance(SIZE, seed) if refl is None else refl
    dn = {}
    for b in BANDS:
        arr = to_dn(refl[IDX[b]], offset_dn=OFFSET_DN[template])
        if nodata is not None:
            arr[nodata] = 0
        dn[b] = (
            arr.reshape(SIZE // 2, 2, SIZE // 2, 2).mean(axis=(1, 3)).astype(np.uint16)
            if b in half_res
            else arr
        )
    hrefs = write_band_cogs(tmp / item_id, dn, transform=ORIGIN, crs=CRS)
    shapes = {b: a.shape for b, a in dn.items()}
    item = shaped_item(
        shared_item(shared_data, template), item_id=item_id, when=when, cloud_cover=cloud,
        hrefs=hrefs, transform=ORIGIN, shapes=shapes, crs=CRS,
    )  # fmt: skip
    return item, refl


# ---------------------------------------------------------------- open_stac_item


@pytest.mark.parametrize("template", ["c1-l2a", "es-l2a", "pc-l2a"])
def test_every_provider_convention_gives_the_same_reflectance(
    shared_data: Path, tmp_path: Path, template: str
) -> None:
    raw, refl = make_item(shared_data, tmp_path, template, f"S2_{template}")
    item = pystac.Item.from_dict(raw)
    cube = open_stac_item(item, bands=BANDS, chunks=64)
    assert cube.dims == ("band", "y", "x") and cube.dtype == np.float32
    assert isinstance(cube.data, da.Array) and cube.data.chunksize == (len(BANDS), 64, 64)
    assert list(cube["band"].values) == list(BANDS)
    assert cube.rio.crs.to_epsg() == 32633 and cube.shape == (len(BANDS), SIZE, SIZE)
    assert cube.rio.transform() == ORIGIN
    assert cube.attrs["product_id"] == f"S2_{template}" and cube.attrs["level"] == "L2A"
    expected = np.clip(refl[[IDX[b] for b in BANDS]], 0, 1)
    np.testing.assert_allclose(cube.values, expected, atol=1e-4)


def test_nodata_is_nan_and_reflectance_is_clipped(shared_data: Path, tmp_path: Path) -> None:
    refl = synthetic_reflectance(SIZE, 1)
    refl[:, :5, :] = -0.05  # below zero: DN 500 with the -1000 offset -> clipped to 0
    stripe = np.zeros((SIZE, SIZE), bool)
    stripe[:, -7:] = True  # nodata (DN 0) on the right
    raw, _ = make_item(shared_data, tmp_path, "c1-l2a", "clip", refl=refl, nodata=stripe)
    cube = open_stac_item(pystac.Item.from_dict(raw), bands=BANDS).values
    assert np.isnan(cube[:, :, -7:]).all() and not np.isnan(cube[:, :, :-7]).any()
    assert (cube[:, :5, :-7] == 0).all() and np.nanmax(cube) <= 1.0


def test_20m_bands_are_resampled_to_the_10m_grid(shared_data: Path, tmp_path: Path) -> None:
    refl = np.full((13, SIZE, SIZE), 0.2, np.float32)
    raw, _ = make_item(shared_data, tmp_path, "pc-l2a", "halfres", refl=refl, half_res=("B05", "B11", "B12"))
    item = pystac.Item.from_dict(raw)
    cube = open_stac_item(item, bands=BANDS)
    assert cube.shape == (len(BANDS), SIZE, SIZE)
    np.testing.assert_allclose(cube.values, 0.2, atol=1e-4)
    coarse = open_stac_item(item, bands=BANDS, resolution=20)
    assert coarse.shape == (len(BANDS), SIZE // 2, SIZE // 2) and coarse.rio.resolution() == (20.0, -20.0)


def test_bbox_crops_on_the_item_grid(shared_data: Path, tmp_path: Path) -> None:
    raw, refl = make_item(shared_data, tmp_path, "c1-l2a", "crop")
    w, s, e, n = raw["bbox"]
    dx, dy = (e - w) / 4, (n - s) / 4
    cube = open_stac_item(pystac.Item.from_dict(raw), bands=BANDS, bbox=(w + dx, s + dy, e - dx, n - dy))
    assert 0 < cube.sizes["x"] < SIZE and 0 < cube.sizes["y"] < SIZE
    tr = cube.rio.transform()
    assert (tr.c - ORIGIN.c) % 10 == 0 and (ORIGIN.f - tr.f) % 10 == 0  # same 10 m grid
    col, row = int((tr.c - ORIGIN.c) / 10), int((ORIGIN.f - tr.f) / 10)
    window = refl[IDX["B04"], row : row + cube.sizes["y"], col : col + cube.sizes["x"]]
    np.testing.assert_allclose(cube.sel(band="B04").values, window, atol=1e-4)


def test_disallowed_href_scheme_is_refused_before_reading(shared_data: Path, tmp_path: Path) -> None:
    raw, _ = make_item(shared_data, tmp_path, "c1-l2a", "schemes")
    with pytest.raises(StacError, match="scheme 'file', which is not allowed"):
        open_stac_item(pystac.Item.from_dict(raw), bands=BANDS, allowed_schemes=("https",))


def test_missing_asset_file_fails_on_compute_not_silently(shared_data: Path, tmp_path: Path) -> None:
    raw, _ = make_item(shared_data, tmp_path, "c1-l2a", "gone")
    (tmp_path / "gone" / "B03.tif").unlink()
    cube = open_stac_item(pystac.Item.from_dict(raw), bands=BANDS)
    with pytest.raises(ProductNotFoundError, match=r"The asset file .*/gone/B03\.tif does not exist"):
        cube.compute()


# ---------------------------------------------------------------- run_stac


@pytest.fixture(scope="module")
def catalogue(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Three items: two cloudy-enough June scenes of different providers, one too cloudy."""
    tmp = tmp_path_factory.mktemp("stac_run")
    a, refl_a = make_item(shared_data, tmp, "c1-l2a", "S2B_T33TWL_20240610_L2A", seed=2)
    b, refl_b = make_item(
        shared_data, tmp, "c1-l2a", "S2A_T33TWL_20240620_L2A", seed=3, when="2024-06-20T10:00:00Z"
    )
    c, _ = make_item(
        shared_data, tmp, "c1-l2a", "S2A_T33TWL_20240625_L2A", seed=4, cloud=90.0, when="2024-06-25T10:00:00Z"
    )
    with RustacServer([a, b, c], tmp / "server") as server:
        yield {"url": server.url, "bbox": a["bbox"], "refl": {a["id"]: refl_a, b["id"]: refl_b}, "tmp": tmp}


def stac_args(catalogue: dict, out: Path, **kw: Any) -> dict[str, Any]:
    args = {"url": catalogue["url"], "collection": "sentinel-2-c1-l2a", "bbox": catalogue["bbox"],
            "date": "2024-06", "max_cloud": 60, "out_dir": out, "crop": False}  # fmt: skip
    return {**args, **kw}


@pytest.fixture(scope="module")
def first_run(catalogue: dict) -> Any:
    """One run_stac over the catalogue, shared by the tests that only read its outputs."""
    model = CardedThreshold()
    out = catalogue["tmp"] / "first_run"
    return run_stac(**stac_args(catalogue, out), model=model, run_one=engine_run_one(model))


def test_run_stac_writes_one_mask_per_item_and_an_index(catalogue: dict, first_run: Any) -> None:
    result = first_run
    assert result.ok and result.index == catalogue["tmp"] / "first_run" / INDEX_NAME
    ids = [o.item_id for o in result.outputs]
    assert ids == [
        "S2B_T33TWL_20240610_L2A",
        "S2A_T33TWL_20240620_L2A",
    ]  # time order; the 90 % one filtered out
    for out in result.outputs:
        assert out.mask.name == f"{out.item_id}_mask.tif" and out.mask.exists()
        assert out.mask.with_suffix(".json").exists() and out.mask.with_suffix(".png").exists()
        assert sum(out.fractions[c] for c in ("clear", "cloud", "shadow")) == pytest.approx(1.0, abs=1e-5)
        assert 0.05 < out.fractions["cloud"] < 0.9 and out.fractions["shadow"] > 0.005
    index = json.loads(result.index.read_text())
    collection = pystac.ItemCollection.from_dict(index)  # a valid STAC ItemCollection
    assert [i.id for i in collection] == ids
    first = index["features"][0]
    assert first["assets"]["mask"]["href"] == "S2B_T33TWL_20240610_L2A_mask.tif"
    assert set(first["assets"]) == {"mask", "summary", "quicklook"}
    assert first["properties"]["s2mask:cloud_fraction"] == result.outputs[0].fractions["cloud"]
    # eo:cloud_cover is the mask's own (percent of valid pixels); the provider's is kept as s2mask:source_cloud_cover
    assert first["properties"]["eo:cloud_cover"] == pytest.approx(100 * result.outputs[0].fractions["cloud"])
    assert first["properties"]["s2mask:source_cloud_cover"] == 20.0 and index["s2mask:failures"] == []
    assert not list(result.index.parent.glob(".*"))  # no temporary files left


def test_stac_masks_equal_s2mask_run_on_the_same_pixels(
    catalogue: dict, first_run: Any, tmp_path: Path
) -> None:
    from s2mask.run import RunOptions, run_product

    model = CardedThreshold()
    for out in first_run.outputs:
        # the same DN written as a 9-band GeoTIFF product, read by the GeoTIFF reader with the same radiometry
        dn = np.stack([to_dn(catalogue["refl"][out.item_id][IDX[b]], offset_dn=1000) for b in BANDS])
        product = write_cog(tmp_path / f"{out.item_id}.tif", dn, ORIGIN, CRS, descriptions=BANDS)
        ref = run_product(product, tmp_path / "run" / f"{out.item_id}_mask.tif", model=model,
                          options=RunOptions(scale=1e-4, offset=-0.1, window=64, overlap=8, progress=False))  # fmt: skip
        with rasterio.open(out.mask) as a, rasterio.open(ref.mask) as b:
            assert a.transform == b.transform and a.crs == b.crs
            np.testing.assert_array_equal(a.read(1), b.read(1))
        assert out.fractions == mask_fractions(ref.mask)


def test_dry_run_lists_without_writing(catalogue: dict, tmp_path: Path) -> None:
    calls = []
    result = run_stac(
        **stac_args(catalogue, tmp_path / "dry"), dry_run=True, run_one=lambda c, p: calls.append(p)
    )
    assert result.dry_run and result.index is None and calls == []
    assert [o.status for o in result.outputs] == ["planned", "planned"]
    assert not (tmp_path / "dry").exists()
    text = describe_plan(result)
    assert "S2B_T33TWL_20240610_L2A" in text and "cloud  20.0%" in text and "_mask.tif" in text


def test_a_failing_item_is_reported_and_the_others_go_on(catalogue: dict, tmp_path: Path) -> None:
    model = CardedThreshold()
    real = engine_run_one(model)

    def run_one(cube: Any, out: Path) -> Any:
        if cube.attrs["product_id"].startswith("S2B"):
            raise RuntimeError("simulated decoder failure")
        return real(cube, out)

    result = run_stac(**stac_args(catalogue, tmp_path / "out"), model=model, run_one=run_one)
    assert not result.ok
    assert [(f.item_id, f.error) for f in result.failures] == [
        ("S2B_T33TWL_20240610_L2A", "unexpected RuntimeError: simulated decoder failure (this may be a bug in "
         "s2mask; rerun with --debug for the traceback and report it)")
    ]  # fmt: skip  (the one failure reason of every batch, as s2mask run reports it)
    assert [o.item_id for o in result.outputs] == ["S2A_T33TWL_20240620_L2A"]
    index = json.loads(result.index.read_text())
    assert [f["id"] for f in index["features"]] == ["S2A_T33TWL_20240620_L2A"]
    assert index["s2mask:failures"][0]["item_id"] == "S2B_T33TWL_20240610_L2A"


def test_existing_outputs_are_refused_resumed_or_overwritten(
    catalogue: dict, first_run: Any, tmp_path: Path
) -> None:
    model = CardedThreshold()
    out = tmp_path / "out"
    shutil.copytree(first_run.index.parent, out)
    with pytest.raises(OutputExistsError, match="2 output"):
        run_stac(**stac_args(catalogue, out), model=model, run_one=engine_run_one(model))
    calls: list[Path] = []
    resumed = run_stac(
        **stac_args(catalogue, out), model=model, resume=True, run_one=lambda c, p: calls.append(p)
    )
    assert calls == [] and [o.status for o in resumed.outputs] == ["skipped", "skipped"]
    assert resumed.outputs[0].fractions["cloud"] > 0
    redo = run_stac(
        **stac_args(catalogue, out),
        model=model,
        options=RunOptions(overwrite=True),
        run_one=engine_run_one(model, overwrite=True),
    )
    assert [o.status for o in redo.outputs] == ["done", "done"]


def test_crop_limits_the_mask_to_the_bbox(catalogue: dict, tmp_path: Path) -> None:
    model = CardedThreshold()
    w, s, e, n = catalogue["bbox"]
    box = (w, s, w + (e - w) / 2, s + (n - s) / 2)
    result = run_stac(**stac_args(catalogue, tmp_path / "out", bbox=box, crop=True), model=model,
                      run_one=engine_run_one(model))  # fmt: skip
    with rasterio.open(result.outputs[0].mask) as src:
        assert src.width < SIZE and src.height < SIZE


def test_empty_search_raises(catalogue: dict, tmp_path: Path) -> None:
    with pytest.raises(EmptySearchError):
        run_stac(**stac_args(catalogue, tmp_path / "out", date="2023-06"), run_one=lambda c, p: None)
    assert not (tmp_path / "out").exists()
