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
from s2mask.testing.products import write_geotiff
from tests.conftest import need

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
    da = xr.DataArray(
        mask, dims=("y", "x"), coords={"y": 1300015.0 - 10 * np.arange(H), "x": 600005.0 + 10 * np.arange(W)}
    )
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


def test_composite_computes_masks_with_a_model(tmp_path, shared_data):
    """Masks computed by the shipped model keep the clouds of one scene out of the composite.

    Scene A is the cloudy Nigeria patch, scene B the same patch mirrored (its clouds elsewhere).
    Where A is cloud and B clear the composite holds B's pixels; an all-clear mask would
    give the median (mean) of the two there instead.
    """
    nigeria = need(shared_data / "sen12mscr_nigeria" / "ROIs1868_summer_s2_cloudy_19_p30.tif")
    with rasterio.open(nigeria) as src:
        dn_a, profile = src.read(), src.profile
    dn_b = np.flip(dn_a, axis=2).copy()
    with rasterio.open(tmp_path / "b.tif", "w", **profile) as dst:
        dst.write(dn_b)
    runner = CliRunner()
    for name, product in (("a", nigeria), ("b", tmp_path / "b.tif")):
        result = runner.invoke(cli, ["run", str(product), "-o", str(tmp_path / f"{name}_mask.tif"), "-q"])
        assert result.exit_code == 0, result.output
    result = runner.invoke(
        cli, ["composite", str(nigeria), str(tmp_path / "b.tif"), "-o", str(tmp_path / "c.tif"), "-q"]
    )
    assert result.exit_code == 0, result.output
    assert cog_validate(str(tmp_path / "c.tif"), quiet=True)[0]
    with rasterio.open(tmp_path / "a_mask.tif") as a, rasterio.open(tmp_path / "b_mask.tif") as b:
        mask_a, mask_b = a.read(1), b.read(1)
    with rasterio.open(tmp_path / "c.tif") as src:
        b02 = src.read(src.descriptions.index("B02") + 1).astype(int)
    only_b = (mask_a == 1) & (mask_b == 0)
    assert only_b.sum() > 500  # A's clouds over B's clear land
    assert np.abs(b02[only_b] - dn_b[1][only_b]).max() <= 1
    both = (mask_a == 0) & (mask_b == 0)
    assert np.abs(b02[both] - (dn_a[1][both].astype(int) + dn_b[1][both]) / 2).max() <= 1


def test_composite_refuses_mask_count_mismatch(tmp_path):
    p, m = _write(tmp_path, 0, *_scene(0.1, slice(0, 0)))
    result = CliRunner().invoke(
        cli, ["composite", str(p), str(p), "--mask", str(m), "-o", str(tmp_path / "c.tif")]
    )
    assert result.exit_code == 2 and "--mask" in result.output
    assert not (tmp_path / "c.tif").exists()
