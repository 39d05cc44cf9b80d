"""`s2mask composite --method percentile|medoid|geomedian|first` with --order and --min/--max-observations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import xarray as xr
from affine import Affine
from click.testing import CliRunner

from s2mask.bands import BAND_NAMES
from s2mask.cli import cli
from s2mask.io.cog import write_mask
from s2mask.testing.products import write_geotiff

T = Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 1300020.0)
H = W = 32
LEVELS = (0.10, 0.20, 0.30)  # scene i reads LEVELS[i] where clear


def _series(tmp: Path) -> list[str]:
    """Three scenes: scene 0 cloudy in the top half, scenes 1 and 2 clear."""
    args = []
    for i, level in enumerate(LEVELS):
        refl = np.full((13, H, W), level, np.float32)
        mask = np.zeros((H, W), np.uint8)
        if i == 0:
            refl[:, : H // 2] = 0.9
            mask[: H // 2] = 1
        product = write_geotiff(tmp / f"scene{i}.tif", refl, BAND_NAMES, "EPSG:32631", T)
        coords = {"y": 1300015.0 - 10 * np.arange(H), "x": 600005.0 + 10 * np.arange(W)}
        m = (
            xr.DataArray(mask, dims=("y", "x"), coords=coords)
            .rio.write_crs("EPSG:32631")
            .rio.write_transform(T)
        )
        args += [str(product), "--mask", str(write_mask(m, tmp / f"mask{i}.tif"))]
    return args


def _run(tmp: Path, name: str, *extra: str):  # noqa: ANN202
    out = tmp / name
    inputs = _series(tmp) if not (tmp / "scene0.tif").exists() else _inputs(tmp)
    args = ["composite", *inputs, "-o", str(out), "-q", "--overwrite", "--output-bands", "B04,B03,B02"]
    result = CliRunner().invoke(cli, [*args, *extra])
    return result, out


def _inputs(tmp: Path) -> list[str]:
    return [
        a
        for i in range(len(LEVELS))
        for a in (str(tmp / f"scene{i}.tif"), "--mask", str(tmp / f"mask{i}.tif"))
    ]


def _read(path: Path) -> dict[str, np.ndarray]:
    with rasterio.open(path) as src:
        return {d: src.read(i) for i, d in enumerate(src.descriptions, start=1)}


def test_methods_and_observation_options(tmp_path: Path) -> None:
    result, out = _run(tmp_path, "p.tif", "--method", "percentile", "--percentile", "0")
    assert result.exit_code == 0, result.output
    bands = _read(out)
    assert (bands["B04"][H // 2 :] == 1000).all() and (bands["B04"][: H // 2] == 2000).all()  # darkest clear

    result, out = _run(tmp_path, "f.tif", "--method", "first", "--order", "newest", "--max-observations", "1")
    assert result.exit_code != 0 and "needs scene dates" in str(
        result.exception
    )  # these files carry no dates
    assert not out.exists()

    result, out = _run(tmp_path, "m.tif", "--method", "medoid", "--min-observations", "3")
    assert result.exit_code == 0, result.output
    bands = _read(out)
    assert (bands["count"][: H // 2] == 2).all() and (bands["B04"][: H // 2] == 0).all()  # two clear: nodata
    assert (bands["source"][H // 2 :] == 2).all() and (bands["B04"][H // 2 :] == 2000).all()  # the middle one

    result, out = _run(tmp_path, "g.tif", "--method", "first", "--max-observations", "1")
    assert result.exit_code == 0, result.output
    bands = _read(out)
    assert (bands["source"][: H // 2] == 2).all() and (bands["source"][H // 2 :] == 1).all()
    assert (bands["count"] == 1).all()


def test_bad_combinations_are_usage_errors(tmp_path: Path) -> None:
    result, _ = _run(tmp_path, "x.tif", "--method", "percentile")
    assert result.exit_code == 2 and "--percentile" in result.output
    result, _ = _run(tmp_path, "x.tif", "--method", "median", "--percentile", "25")
    assert result.exit_code == 2 and "--percentile" in result.output
    result, _ = _run(tmp_path, "x.tif", "--min-observations", "3", "--max-observations", "2")
    assert result.exit_code == 2 and "--max-observations" in result.output
