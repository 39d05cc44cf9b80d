"""STAC out: every mask and composite gets a STAC Item beside it, a batch gets an ItemCollection.

Items are validated offline with pystac's JSON-schema validator: the core STAC 1.1.0 schemas pystac
ships, the extension schemas vendored in ``tests/data/stac_schemas`` (nothing is fetched).  The
catalogue of a ``run_stac`` is read back with pystac and with s2mask's own STAC reader, then served
from a local STAC API where pystac-client finds the masks by ``eo:cloud_cover``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio
import xarray as xr
from click.testing import CliRunner
from pystac.errors import STACValidationError
from pystac.validation.stac_validator import JsonSchemaSTACValidator
from rasterio.warp import transform_bounds

from s2mask.cli import cli
from s2mask.mask import CLASSES, COLOURS, NODATA, NODATA_NAME
from s2mask.stac_out import EXTENSIONS, INDEX_NAME, RasterInfo, acquisition_datetime, item_path, mask_item
from s2mask.summary import mask_summary
from s2mask.testing.products import write_safe
from tests.reliability_helpers import files_in, save_threshold_weights, scene
from tests.stac_server import block_internet  # noqa: F401 - fixture

SCHEMAS = Path(__file__).parent / "data" / "stac_schemas"
CORE_ITEM = "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json"
DATED = "S2B_MSIL2A_20240610T101609_N0510_R065_T31PDQ_20240610T130101"
LATER = "S2A_MSIL2A_20240625T101031_N0510_R065_T31PDQ_20240625T140000"


class OfflineValidator(JsonSchemaSTACValidator):
    """pystac's validator with its own core schemas and the vendored extension schemas; never fetches."""

    def __init__(self) -> None:
        super().__init__()
        for path in SCHEMAS.glob("*_v*.json"):
            name, version = path.stem.rsplit("_v", 1)
            uri = f"https://stac-extensions.github.io/{name}/v{version}/schema.json"
            self.schema_cache[uri] = json.loads(path.read_text())

    def _get_schema(self, schema_uri: str) -> dict[str, Any]:
        if schema_uri not in self.schema_cache:
            raise AssertionError(f"{schema_uri} is not vendored in {SCHEMAS}; add its schema file there")
        return self.schema_cache[schema_uri]


def validate(doc: dict[str, Any]) -> set[str]:
    """Validate an Item dict offline; return the schema URIs it was validated against."""
    return set(pystac.validation.validate_dict(doc, validator=OfflineValidator()))


def _write_mask(path: Path, values: np.ndarray, epsg: int = 32633) -> Path:
    from s2mask.io.cog import write_mask

    rows, cols = values.shape
    mask = xr.DataArray(
        values, dims=("y", "x"), coords={"y": 5_080_000 - 10.0 * (np.arange(rows) + 0.5),
                                         "x": 500_000 + 10.0 * (np.arange(cols) + 0.5)},
    ).rio.write_crs(epsg)  # fmt: skip
    return write_mask(mask, path, progress=False)


@pytest.fixture
def written(tmp_path: Path) -> dict[str, Any]:
    """A small mask COG with every class and some nodata, and its summary."""
    rng = np.random.default_rng(3)
    values = rng.choice(np.array([0, 0, 0, 1, 2, NODATA], np.uint8), size=(40, 56))
    path = _write_mask(tmp_path / "m.tif", values)
    return {"path": path, "values": values, "summary": mask_summary(values)}


def _item(written: dict[str, Any], **kw: Any) -> pystac.Item:
    args = {"item_id": "S2_TEST", "href": "m.tif", "when": "2024-06-10T10:16:09Z", "source": "/data/S2_TEST.SAFE",
            "model": {"name": "s2-9", "version": "9.9"}, **kw}  # fmt: skip
    return mask_item(RasterInfo.read(written["path"]), written["summary"], **args)


# ---------------------------------------------------------------- the Item of one mask


def _hex(rgba: tuple[int, ...]) -> str:
    return "".join(f"{c:02X}" for c in rgba[:3])


def test_a_mask_item_validates_against_every_extension_it_declares(written: dict[str, Any]) -> None:
    doc = _item(written).to_dict(include_self_link=False, transform_hrefs=False)
    assert validate(doc) == {CORE_ITEM, *EXTENSIONS.values()}


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d["properties"].update({"eo:cloud_cover": 150.0}),
        lambda d: d["properties"].update({"proj:shape": [40]}),
        lambda d: d["properties"].update({"processing:software": {"s2mask": 1}}),
        lambda d: d["assets"]["mask"]["classification:classes"][0].update({"color_hint": "green"}),
        lambda d: d["assets"]["mask"]["raster:bands"][0].update({"data_type": "byte"}),
    ],
    ids=["eo", "projection", "processing", "classification", "raster"],
)
def test_the_offline_validator_catches_a_broken_extension_field(written: dict[str, Any], damage: Any) -> None:
    doc = _item(written).to_dict(include_self_link=False, transform_hrefs=False)
    damage(doc)
    with pytest.raises(STACValidationError):
        validate(doc)


def test_a_mask_item_describes_the_mask_grid_and_classes(written: dict[str, Any]) -> None:
    item = _item(written)
    props, asset = item.properties, item.assets["mask"]
    with rasterio.open(written["path"]) as src:
        assert props["proj:code"] == f"EPSG:{src.crs.to_epsg()}" and props["proj:shape"] == [
            src.height,
            src.width,
        ]
        assert props["proj:transform"] == list(src.transform)[:6] and props["proj:bbox"] == list(src.bounds)
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
    assert item.bbox == pytest.approx([west, south, east, north], abs=1e-7)
    lon, lat = np.array(item.geometry["coordinates"][0]).T
    assert (lon.min(), lat.min(), lon.max(), lat.max()) == tuple(item.bbox)
    # the classes as s2mask.mask encodes them, each with its count from the summary
    counts = np.bincount(written["values"].ravel(), minlength=256)
    expected = [
        {"value": v, "name": n, "color_hint": _hex(COLOURS[v]), "count": int(counts[v])}
        for v, n in sorted(CLASSES.items())
    ]
    expected.append({"value": NODATA, "name": NODATA_NAME, "color_hint": _hex(COLOURS[NODATA]),
                     "count": int(counts[NODATA]), "nodata": True})  # fmt: skip
    assert asset.extra_fields["classification:classes"] == expected
    assert asset.extra_fields["raster:bands"] == [
        {"data_type": "uint8", "nodata": NODATA, "spatial_resolution": 10.0, "sampling": "area"}
    ]
    assert asset.href == "m.tif" and "data" in asset.roles
    assert [(link.rel, link.href) for link in item.links] == [("derived_from", "/data/S2_TEST.SAFE")]
    assert props["processing:software"] == {"s2mask": __import__("s2mask").__version__}
    assert (props["s2mask:model"], props["s2mask:model_version"]) == ("s2-9", "9.9")
    assert item.datetime.isoformat() == "2024-06-10T10:16:09+00:00"


def test_cloud_and_shadow_cover_are_the_summary_fractions_not_a_recount(written: dict[str, Any]) -> None:
    summary = {
        **written["summary"],
        "fractions": {"clear": 0.5, "cloud": 0.375, "shadow": 0.125, "nodata": 0.0},
    }
    props = _item({**written, "summary": summary}).properties
    assert props["eo:cloud_cover"] == 37.5 and props["s2mask:shadow_cover"] == 12.5
    assert props["s2mask:cloud_fraction"] == 0.375 and props["s2mask:clear_fraction"] == 0.5


def test_acquisition_time_comes_from_the_source() -> None:
    assert (
        acquisition_datetime({"datetime": "2024-06-10T10:00:00Z"}).isoformat() == "2024-06-10T10:00:00+00:00"
    )
    assert acquisition_datetime({"product_id": DATED}).isoformat() == "2024-06-10T10:16:09+00:00"
    assert acquisition_datetime({"product_id": "scene", "datetime": ""}) is None


def test_a_source_without_a_date_gets_the_processing_time_flagged(written: dict[str, Any]) -> None:
    item = _item(written, when=None)
    assert item.properties["s2mask:datetime_is_processing_time"] is True
    assert item.datetime.isoformat().replace("+00:00", "Z") == item.properties["processing:datetime"]
    assert validate(item.to_dict(include_self_link=False, transform_hrefs=False))


# ---------------------------------------------------------------- s2mask run


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("stac_out_products")
    return {
        "a": write_safe(root, scene(seed=0), level="L2A", baseline="05.10", product_id=DATED),
        "b": write_safe(root, scene(seed=5), level="L2A", baseline="05.10", product_id=LATER),
        "weights": save_threshold_weights(root / "threshold.safetensors"),
    }


def _run(*args: Any) -> Any:
    result = CliRunner().invoke(cli, ["run", *map(str, args), "-q"])
    assert result.exit_code == 0, result.output
    return result


def test_run_writes_a_valid_item_beside_the_mask(products: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "m.tif"
    _run(products["a"], "-o", out, "--weights", products["weights"])
    path = item_path(out)
    assert path.name == "m.stac.json" and validate(json.loads(path.read_text())) >= set(EXTENSIONS.values())
    item = pystac.Item.from_file(str(path))
    summary = json.loads((tmp_path / "m.json").read_text())
    assert item.id == summary["product_id"] == DATED
    assert item.datetime.isoformat() == "2024-06-10T10:16:09+00:00"  # from the product, not the run
    assert item.properties["eo:cloud_cover"] == pytest.approx(100 * summary["fractions"]["cloud"])
    assert item.properties["s2mask:shadow_cover"] == pytest.approx(100 * summary["fractions"]["shadow"])
    assert item.properties["s2mask:model"] == summary["model"]["name"]
    classes = {c["name"]: c["count"] for c in item.assets["mask"].extra_fields["classification:classes"]}
    assert classes == {k: summary["counts"][k] for k in (*CLASSES.values(), NODATA_NAME)}
    assert [link.href for link in item.links if link.rel == "derived_from"] == [str(products["a"].absolute())]
    # relative hrefs resolve to the outputs beside the Item
    assert {k: Path(a.get_absolute_href()) for k, a in item.assets.items()} == {
        "mask": out, "summary": tmp_path / "m.json", "quicklook": tmp_path / "m.png"
    }  # fmt: skip
    with rasterio.open(item.assets["mask"].get_absolute_href()) as src:
        assert [src.height, src.width] == item.properties["proj:shape"]


def test_no_stac_item_skips_it(products: dict[str, Path], tmp_path: Path) -> None:
    _run(
        products["a"],
        "-o",
        tmp_path / "m.tif",
        "--weights",
        products["weights"],
        "--no-stac-item",
        "--no-quicklook",
    )
    assert files_in(tmp_path) == ["m.json", "m.tif", "m.tif.aux.xml"]


def test_the_item_is_published_with_the_mask_or_not_at_all(
    products: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from s2mask.errors import OutputError

    def failing(item: Any, path: Path) -> Path:
        raise OutputError(f"Cannot write the STAC Item {path} (simulated full disk).")

    monkeypatch.setattr("s2mask.stac_out.write_item", failing)
    result = CliRunner().invoke(cli, ["run", str(products["a"]), "-o", str(tmp_path / "m.tif"), "--weights",
                                      str(products["weights"]), "-q"])  # fmt: skip
    assert result.exit_code != 0 and isinstance(result.exception, OutputError)
    assert str(tmp_path / "m.stac.json") in str(result.exception)  # the target, not the staged file
    assert files_in(tmp_path) == []  # no mask, no summary, no quick-look, no temporary file


def test_a_batch_run_writes_the_item_collection_of_its_masks(
    products: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "masks"
    result = _run(products["a"], products["b"], "-o", out, "--weights", products["weights"], "--no-quicklook")
    assert f"index: {out / INDEX_NAME}" in result.output
    collection = pystac.ItemCollection.from_file(str(out / INDEX_NAME))
    assert [i.id for i in collection] == [DATED, LATER]
    doc = json.loads((out / INDEX_NAME).read_text())
    for feature in doc["features"]:  # the very Items written beside the masks
        assert feature == json.loads((out / f"{feature['id']}_mask.stac.json").read_text())
        assert validate(feature) >= set(EXTENSIONS.values())
    assert doc["s2mask:failures"] == []


# ---------------------------------------------------------------- composites


def test_a_composite_gets_an_item_with_its_bands_scenes_and_dates(
    products: dict[str, Path], tmp_path: Path
) -> None:
    from s2mask.composite import CompositeOptions, composite_products

    masks = []
    for key in ("a", "b"):
        masks.append(tmp_path / f"{key}_mask.tif")
        _run(products[key], "-o", masks[-1], "--weights", products["weights"], "--no-quicklook")
    out = tmp_path / "composite.tif"
    composite_products([products["a"], products["b"]], out, masks=masks, options=CompositeOptions(chunks=256))
    doc = json.loads(item_path(out).read_text())
    assert validate(doc) >= {EXTENSIONS[k] for k in ("projection", "raster", "eo", "processing")}
    item = pystac.Item.from_dict(doc)
    assert item.id == "composite" and item.datetime is None
    assert (item.properties["start_datetime"], item.properties["end_datetime"]) == (
        "2024-06-10T10:16:09Z", "2024-06-25T10:10:31Z"
    )  # fmt: skip
    assert [link.href for link in item.links if link.rel == "derived_from"] == [
        str(products["a"].absolute()), str(products["b"].absolute())
    ]  # fmt: skip
    with rasterio.open(out) as src:
        bands = item.assets["composite"].extra_fields["raster:bands"]
        assert [b.get("name", "") for b in bands] == [d or "" for d in src.descriptions]
        assert [b["data_type"] for b in bands] == list(src.dtypes)
        assert item.properties["proj:shape"] == [src.height, src.width]
    eo = item.assets["composite"].extra_fields["eo:bands"]
    assert [b["name"] for b in eo] == [d for d in src.descriptions if d and d.startswith("B")]
    assert item.assets["quicklook"].href == "composite.png"


# ---------------------------------------------------------------- s2mask stac, read back and served


@pytest.fixture(scope="module")
def stac_run(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from tests.stac_server import RustacServer, rustac_command
    from tests.test_stac_run import CardedThreshold, make_item

    if rustac_command() is None:
        pytest.skip("rustac is not installed")
    from s2mask.run import RunOptions
    from s2mask.stac import run_stac

    tmp = tmp_path_factory.mktemp("stac_out_run")
    raw = [
        make_item(shared_data, tmp, "c1-l2a", f"S2B_T33TWL_202406{day}_L2A", seed=seed,
                  when=f"2024-06-{day}T10:00:00Z")[0]
        for day, seed in (("05", 0), ("10", 1), ("15", 4))
    ]  # fmt: skip
    with RustacServer(raw, tmp / "source_api") as source:
        result = run_stac(
            url=source.url, collection="sentinel-2-c1-l2a", bbox=raw[0]["bbox"], date="2024-06", out_dir=tmp / "out",
            crop=False, model=CardedThreshold(), options=RunOptions(window=64, overlap=8, progress=False),
        )  # fmt: skip
        source_url = source.url
    assert result.ok
    return {"result": result, "raw": raw, "source_url": source_url, "tmp": tmp}


def test_stac_writes_an_item_per_mask_linked_to_its_source_item(stac_run: dict[str, Any]) -> None:
    result, url = stac_run["result"], stac_run["source_url"]
    by_id = {r["id"]: r for r in stac_run["raw"]}
    for out in result.outputs:
        item = pystac.Item.from_file(str(item_path(out.mask)))
        assert item.id == out.item_id
        assert item.datetime == pystac.utils.str_to_datetime(by_id[out.item_id]["properties"]["datetime"])
        assert [link.href for link in item.links if link.rel == "derived_from"] == [
            f"{url}/collections/sentinel-2-c1-l2a/items/{out.item_id}"
        ]
        assert item.properties["eo:cloud_cover"] == pytest.approx(100 * out.fractions["cloud"])


def test_the_index_is_the_item_collection_pystac_and_s2mask_read_back(stac_run: dict[str, Any]) -> None:
    from s2mask.io.stac import item_crs

    result = stac_run["result"]
    collection = pystac.ItemCollection.from_file(str(result.index))
    assert [i.id for i in collection] == [o.item_id for o in result.outputs]
    for item, out in zip(collection, result.outputs, strict=True):
        d = item.to_dict(include_self_link=False, transform_hrefs=False)
        assert validate(d) >= set(EXTENSIONS.values())
        assert item_crs(item) == "EPSG:32633"  # s2mask's own reader reads the grid's CRS
        assert item.properties["s2mask:source_cloud_cover"] == out.cloud_cover
        assert item.properties["s2mask:status"] == "done"
        written = json.loads(item_path(out.mask).read_text())
        assert {k: v for k, v in d["properties"].items() if not k.startswith("s2mask:s")} == {
            k: v for k, v in written["properties"].items() if not k.startswith("s2mask:s")
        }


@pytest.mark.usefixtures("block_internet")
def test_a_downstream_client_finds_the_masks_by_cloud_cover(stac_run: dict[str, Any]) -> None:
    from pystac_client import Client

    from s2mask.io.stac import search_items
    from tests.stac_server import FilteringProxy, RustacServer

    # publish: the Items as written, hrefs made absolute, in a collection of their own
    published = []
    for out in stac_run["result"].outputs:
        item = pystac.Item.from_file(str(item_path(out.mask)))
        item.make_asset_hrefs_absolute()
        item.collection_id = "s2mask-masks"
        published.append(item.to_dict(include_self_link=False))
    cover = {d["id"]: d["properties"]["eo:cloud_cover"] for d in published}
    ranked = sorted(cover, key=cover.get)
    assert len(set(cover.values())) == 3, cover  # three different scenes: a threshold can split them
    limit = (cover[ranked[0]] + cover[ranked[1]]) / 2
    bbox = stac_run["raw"][0]["bbox"]
    with RustacServer(published, stac_run["tmp"] / "mask_api") as api, FilteringProxy(api.url) as proxy:
        client = Client.open(proxy.url)
        everything = [i.id for i in client.search(collections=["s2mask-masks"]).items()]
        query = client.search(collections=["s2mask-masks"], query={"eo:cloud_cover": {"lt": limit}})
        cql = client.search(collections=["s2mask-masks"], filter_lang="cql2-json",
                            filter={"op": "<", "args": [{"property": "eo:cloud_cover"}, limit]})  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the API conforms to both: pystac-client sends them as is
            by_query, by_filter = list(query.items()), [i.id for i in cql.items()]
        ours = search_items(
            url=proxy.url, collection="s2mask-masks", bbox=bbox, date="2024-06", max_cloud=limit
        )
    assert sorted(everything) == sorted(cover)
    assert [i.id for i in by_query] == by_filter == [i.id for i in ours] == [ranked[0]]
    # the mask the search found holds the cloud share its Item announces
    with rasterio.open(by_query[0].assets["mask"].href) as src:
        values = src.read(1)
    valid = values != NODATA
    assert 100 * (values[valid] == 1).mean() == pytest.approx(by_query[0].properties["eo:cloud_cover"])
