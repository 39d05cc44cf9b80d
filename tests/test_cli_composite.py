"""`s2mask composite` through the CLI: products plus existing masks, and masks computed by a model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import xarray as xr
from affine import Affine
from click.testing import CliRunner
from rio_cogeo.cogeo import cog_validate

from s2mask.bands import BAND_NAMES
from s2mask.cli import cli
from s2mask.io.cog import write_mask
from s2mask.model import save_model
from s2mask.testing.models import tiny_unet
from s2mask.testing.products import write_geotiff

T = Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 1300020.0)
H = W = 64


def _scene(value: float, cloudy_rows: slice) -> tuple[np.ndarray, np.ndarray]:
    refl = np.full((13, H, W), value, dtype=np.float32)
    mask = np.zeros((H, W), dtype=np.uint8)
    refl[:, cloudy_rows] = 0.9
    mask[cloudy_rows] = 1
    return refl, mask


def _write(tmp: Path, i: int, refl: np.ndarray, mask: np.ndarray) -> tuple[Path, Path]:
    product = write_geotiff(tmp / f"scene{i}.tif", refl, BAND_NAMES, "EPSG:32631", T)
    da = xr.DataArray(mask, dims=("y", "x"), coords={"y": 1300015.0 - 10 * np.arange(H),
                                                     "x": 600005.0 + 10 * np.arange(W)})
    da = da.rio.write_crs("EPSG:32631").rio.write_transform(T)
    return product, write_mask(da, tmp / f"scene{i}_mask.tif")


def test_composite_with_given_masks_recovers_clear_values(tmp_path):
    values = (0.10, 0.20, 0.30)
    rows = (slice(0, 20), slice(20, 40), slice(0, 0))  # scene 3 is clear everywhere
    pairs = [_write(tmp_path, i, *_scene(v, r)) for i, (v, r) in enumerate(zip(values, rows, strict=True))]
    args = ["composite", *[str(p) for p, _ in pairs], "-o", str(tmp_path / "c.tif"), "-q"]
    for _, m in pairs:
        args += ["--mask", str(m)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert cog_validate(str(tmp_path / "c.tif"), quiet=True)[0]
    with rasterio.open(tmp_path / "c.tif") as src:
        data = src.read()
        descriptions = src.descriptions
    b02 = data[0].astype(float) / 10000
    # rows 0-19: scenes 2 and 3 clear -> median(0.2, 0.3); rows 20-39: scenes 1 and 3; rows 40-: all three
    np.testing.assert_allclose(b02[5], 0.25, atol=1e-4)
    np.testing.assert_allclose(b02[25], 0.20, atol=1e-4)
    np.testing.assert_allclose(b02[50], 0.20, atol=1e-4)
    count = data[descriptions.index(next(d for d in descriptions if "count" in d.lower()))]
    assert count[5, 0] == 2 and count[25, 0] == 2 and count[50, 0] == 3
    assert (tmp_path / "c.png").exists()


def test_composite_computes_masks_with_a_model(tmp_path):
    m = tiny_unet(width=4, window_size=64)
    weights = save_model(m.net, m.card, tmp_path / "tiny.safetensors")
    products = [_write(tmp_path, i, *_scene(v, slice(0, 0)))[0] for i, v in enumerate((0.1, 0.2))]
    result = CliRunner().invoke(cli, ["composite", *map(str, products), "--weights", str(weights),
                                      "-o", str(tmp_path / "c.tif"), "-q"])
    assert result.exit_code == 0, result.output
    assert cog_validate(str(tmp_path / "c.tif"), quiet=True)[0]


def test_composite_refuses_mask_count_mismatch(tmp_path):
    p, m = _write(tmp_path, 0, *_scene(0.1, slice(0, 0)))
    result = CliRunner().invoke(cli, ["composite", str(p), str(p), "--mask", str(m), "-o", str(tmp_path / "c.tif")])
    assert result.exit_code == 2 and "--mask" in result.output
    assert not (tmp_path / "c.tif").exists()
