"""`s2mask stac` end to end through the CLI against a real STAC API on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rio_cogeo.cogeo import cog_validate

from s2mask.bands import BAND_NAMES
from s2mask.cli import cli
from s2mask.model import save_model
from s2mask.testing.models import tiny_unet
from tests.conftest import need
from tests.stac_server import RustacServer, rustac_command, write_cog
from tests.test_stac_run import CRS, ORIGIN, make_item

pytestmark = pytest.mark.skipif(rustac_command() is None, reason="rustac is not installed")


@pytest.fixture(scope="module")
def server(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("cli_stac")
    # real pixels: a cloudy 96 px corner of the Nigeria patch, also written as a GeoTIFF for `s2mask run`
    with rasterio.open(
        need(shared_data / "sen12mscr_nigeria" / "ROIs1868_summer_s2_cloudy_19_p30.tif")
    ) as src:
        dn = src.read(window=((160, 256), (160, 256)))
    a, _ = make_item(
        shared_data, tmp, "c1-l2a", "S2B_T33TWL_20240610_L2A", refl=dn.astype(np.float32) / 10000
    )
    product = write_cog(tmp / "a.tif", dn, ORIGIN, CRS, descriptions=BAND_NAMES)
    c, _ = make_item(
        shared_data, tmp, "c1-l2a", "S2A_T33TWL_20240625_L2A", seed=4, cloud=90.0, when="2024-06-25T10:00:00Z"
    )
    m = tiny_unet(width=4, window_size=64)
    weights = save_model(m.net, m.card, tmp / "tiny.safetensors")
    with RustacServer([a, c], tmp / "server") as srv:
        yield {"url": srv.url, "bbox": ",".join(map(str, a["bbox"])), "weights": str(weights), "id": a["id"],
               "product": product}  # fmt: skip


def _args(server, out, *extra):
    return [
        "stac",
        "--url",
        server["url"],
        "--collection",
        "sentinel-2-c1-l2a",
        "--bbox",
        server["bbox"],
        "--date",
        "2024-06",
        "--max-cloud",
        "60",
        "--weights",
        server["weights"],
        "--whole-tile",
        "-q",
        "-o",
        str(out),
        *extra,
    ]


def test_stac_command_writes_masks_and_index(server, tmp_path):
    args = _args(server, tmp_path / "out")
    del args[
        args.index("--weights") : args.index("--weights") + 2
    ]  # the shipped s2-9: a mask worth comparing
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    mask = tmp_path / "out" / f"{server['id']}_mask.tif"
    assert cog_validate(str(mask), quiet=True)[0]
    result = CliRunner().invoke(cli, ["run", str(server["product"]), "-o", str(tmp_path / "run.tif"), "-q"])
    assert result.exit_code == 0, result.output
    with rasterio.open(mask) as src, rasterio.open(tmp_path / "run.tif") as ref:
        got, expected = src.read(1), ref.read(1)
        assert src.dtypes[0] == "uint8" and src.transform == ref.transform
    assert (got == 1).mean() > 0.05 and (got == 0).mean() > 0.3  # the cumulus corner: clouds and clear land
    assert (got == expected).mean() > 0.999  # what `s2mask run` makes of the same pixels
    index = json.loads((tmp_path / "out" / "index.geojson").read_text())
    assert [f["id"] for f in index["features"]] == [server["id"]]  # the 90 % cloudy item is filtered out
    assert index["features"][0]["properties"]["s2mask:cloud_fraction"] == pytest.approx(
        (got == 1).mean(), abs=1e-4
    )
    assert (tmp_path / "out" / f"{server['id']}_mask.json").exists()


def test_stac_dry_run_writes_nothing(server, tmp_path):
    result = CliRunner().invoke(cli, _args(server, tmp_path / "dry", "--dry-run"))
    assert result.exit_code == 0, result.output
    assert server["id"] in result.output
    assert not (tmp_path / "dry").exists() or not any((tmp_path / "dry").iterdir())


def test_stac_bad_bbox_is_a_usage_error(server, tmp_path):
    args = _args(server, tmp_path / "bad")
    args[args.index("--bbox") + 1] = "10,50,9,40"
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "bbox" in result.output.lower()
