"""The mask's encoding has one owner (:mod:`s2mask.mask`): every output names the classes alike.

GDAL tools (``gdalinfo``, QGIS) must see the class names of a mask written by any command,
as category names and a raster attribute table, and the JSON summary, the STAC index and the
quick-look legend must report the same class fractions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr

from s2mask.io.cog import write_mask
from s2mask.mask import CLASSES, COLOURS, NODATA, class_counts, fractions_from_counts, mask_write_options
from tests.gdal_categories import band_classes
from tests.reliability_helpers import Inputs, make_inputs, run_main
from tests.stac_server import rustac_command
from tests.test_cli_stac import _args, server  # noqa: F401 - the STAC API fixture of the stac command tests

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")

NAMES = {0: "clear", 1: "cloud", 2: "shadow", 255: "nodata"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    return make_inputs(tmp_path_factory.mktemp("inputs"))


def _assert_gdal_names_the_classes(path: Path) -> None:
    seen = band_classes(path)
    assert {v: seen["categories"][v] for v in NAMES} == NAMES
    assert [(int(r["VALUE"]), r["CLASS"]) for r in seen["rat"]] == sorted(NAMES.items())
    assert [tuple(int(r[c]) for c in "RGBA") for r in seen["rat"]] == [COLOURS[v] for v in sorted(NAMES)]
    assert seen["usages"]["VALUE"] == 5 and seen["usages"]["CLASS"] == 2  # GFU_MinMax, GFU_Name
    assert all(f"{v} {name}" in seen["description"] for v, name in NAMES.items())


def test_s2mask_run_writes_class_names_gdal_reads(
    inputs: Inputs, tmp_path: Path, monkeypatch, capsys
) -> None:
    out = tmp_path / "m.tif"
    args = ["run", inputs.l2a, "-o", out, "--weights", inputs.threshold, "-q"]
    assert run_main(args, monkeypatch, capsys).code == 0
    _assert_gdal_names_the_classes(out)
    with rasterio.open(out) as ds:
        assert ds.tags()["CLASS_1"] == "cloud" and ds.tags()["CLASS_255"] == "nodata"
        assert ds.colormap(1)[2] == COLOURS[2]


def test_write_mask_writes_class_names_gdal_reads(tmp_path: Path) -> None:
    values = np.random.default_rng(1).integers(0, 3, (600, 700)).astype(np.uint8)
    values[:20] = NODATA
    mask = xr.DataArray(
        values, dims=("y", "x"), coords={"y": 5e6 - 10.0 * np.arange(600), "x": 10.0 * np.arange(700)}
    )
    out = write_mask(mask.rio.write_crs(32633), tmp_path / "mask.tif")
    _assert_gdal_names_the_classes(out)


def test_an_existing_side_file_is_refused_without_overwrite(tmp_path: Path) -> None:
    from s2mask.errors import OutputExistsError

    (tmp_path / "mask.tif.aux.xml").write_text("older")
    mask = xr.DataArray(
        np.zeros((8, 8), np.uint8), dims=("y", "x"), coords={"y": -np.arange(8.0), "x": np.arange(8.0)}
    )
    with pytest.raises(OutputExistsError, match=r"mask\.tif\.aux\.xml already exists"):
        write_mask(mask.rio.write_crs(32633), tmp_path / "mask.tif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.tif.aux.xml"]


def test_summary_index_and_legend_report_the_same_fractions(
    inputs: Inputs, tmp_path: Path, monkeypatch, capsys
) -> None:
    from s2mask.quicklook import _fractions
    from s2mask.stac import mask_fractions

    out = tmp_path / "m.tif"
    args = ["run", inputs.l2a, "-o", out, "--weights", inputs.threshold, "-q"]
    assert run_main(args, monkeypatch, capsys).code == 0
    summary = json.loads(out.with_suffix(".json").read_text())["fractions"]
    mask = rioxarray.open_rasterio(out, chunks=32).squeeze("band", drop=True)
    small = mask.values[::4, ::4]  # the legend counts the full mask, not its thumbnail
    assert summary == mask_fractions(out) == _fractions(mask, small, None)
    counts = np.bincount(mask.values.ravel(), minlength=256)
    valid = counts[:3].sum()
    assert summary == {
        **{n: counts[v] / valid for v, n in CLASSES.items()},
        "nodata": counts[NODATA] / counts.sum(),
    }
    assert 0 < summary["cloud"] < 1  # the threshold model finds the scene's cloud


def test_fractions_count_unknown_values_as_neither_class_nor_nodata() -> None:
    values = np.array([[0, 1, 2, 255], [0, 0, 1, 255], [3, 0, 0, 0]], np.uint8)
    got = fractions_from_counts(class_counts(values))
    assert got == pytest.approx({"clear": 6 / 9, "cloud": 2 / 9, "shadow": 1 / 9, "nodata": 2 / 12})
    assert fractions_from_counts(class_counts(np.full((2, 2), 255, np.uint8))) == {
        "clear": None, "cloud": None, "shadow": None, "nodata": 1.0,
    }  # fmt: skip


def test_mask_write_options_keep_caller_tags() -> None:
    options = mask_write_options(tags={"MODEL": "s2-9"})
    assert options["tags"]["MODEL"] == "s2-9" and options["tags"]["CLASS_0"] == "clear"
    assert options["categories"] == NAMES and options["nodata"] == NODATA


@pytest.mark.skipif(rustac_command() is None, reason="rustac is not installed")
def test_s2mask_stac_writes_class_names_gdal_reads(server: dict, tmp_path: Path) -> None:  # noqa: F811
    from click.testing import CliRunner

    from s2mask.cli import cli

    result = CliRunner().invoke(cli, _args(server, tmp_path / "out", "--resampling", "bilinear"))
    assert result.exit_code == 0, result.output
    _assert_gdal_names_the_classes(tmp_path / "out" / f"{server['id']}_mask.tif")
