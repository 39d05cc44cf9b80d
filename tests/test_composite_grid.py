"""One grid for all scenes: nothing done when grids match, lazy reprojection otherwise."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr
from affine import Affine

from s2mask.composite import Grid, composite, target_grid, to_grid
from s2mask.errors import InvalidParameterError, ProductFormatError


def _cube(
    values: np.ndarray, *, res: float = 10.0, x0: float = 400_000.0, y0: float = 5_000_000.0, chunks=16
):
    b, h, w = values.shape
    coords = {"y": y0 - res * (np.arange(h) + 0.5), "x": x0 + res * (np.arange(w) + 0.5)}
    cube = xr.DataArray(
        da.from_array(values.astype(np.float32), chunks=(b, chunks, chunks)),
        dims=("band", "y", "x"),
        coords={"band": ["B02", "B03", "B04"][:b], **coords},
    )
    return cube.rio.write_crs("EPSG:32633")


def test_grid_of_a_cube():
    cube = _cube(np.zeros((1, 20, 30)))
    g = Grid.of(cube)
    assert g.shape == (20, 30) and g.resolution == (10.0, 10.0)
    assert g.transform == Affine(10, 0, 400_000, 0, -10, 5_000_000)
    np.testing.assert_allclose(g.coords()["x"], cube["x"].values)
    with pytest.raises(ProductFormatError, match="no CRS"):
        Grid.of(xr.DataArray(np.zeros((1, 2, 2)), dims=("band", "y", "x")))


def test_matching_grid_returns_the_cube_untouched():
    cube = _cube(np.zeros((1, 20, 30)))
    assert to_grid(cube, Grid.of(cube)) is cube
    shifted = _cube(np.zeros((1, 20, 30)), x0=400_010.0)
    assert not Grid.of(shifted).matches(Grid.of(cube))


def test_reprojection_is_lazy_and_aligns_pixels():
    values = np.arange(20 * 30, dtype=np.float32).reshape(1, 20, 30)
    shifted = _cube(values, x0=400_050.0)  # 5 columns east of the target grid
    target = Grid.of(_cube(np.zeros((1, 20, 30))))
    out = to_grid(shifted, target, resampling="nearest")
    assert isinstance(out.data, da.Array)
    assert Grid.of(out).matches(target)
    got = out.values[0]
    np.testing.assert_array_equal(got[:, 5:], values[0, :, :25])
    assert np.isnan(got[:, :5]).all()
    mask = xr.DataArray(
        np.ones((20, 30), np.uint8), dims=("y", "x"), coords=shifted.drop_vars("band")[0].coords
    )
    m = to_grid(mask.rio.write_crs("EPSG:32633"), target, resampling="nearest", nodata=255)
    assert m.dtype == np.uint8 and (m.values[:, :5] == 255).all() and (m.values[:, 5:] == 1).all()


def test_target_grid_from_resolution_bbox_and_crs():
    cube = _cube(np.zeros((1, 20, 30)))
    assert target_grid(cube).matches(Grid.of(cube))
    g = target_grid(cube, resolution=20)
    assert g.shape == (10, 15) and g.resolution == (20.0, 20.0) and g.crs == Grid.of(cube).crs
    g = target_grid(cube, bbox=(400_100, 4_999_900, 400_200, 5_000_000))
    assert g.shape == (10, 10) and g.transform.c == 400_100
    g = target_grid(cube, crs="EPSG:32632", resolution=10)
    assert g.crs.to_epsg() == 32632 and g.width >= 30
    lonlat = target_grid(cube, bbox=(13.72, 45.14, 13.73, 45.15), bbox_crs="EPSG:4326")
    assert lonlat.crs.to_epsg() == 32633 and 70 <= lonlat.width <= 90
    with pytest.raises(InvalidParameterError, match="empty"):
        target_grid(cube, bbox=(1, 1, 0, 2))
    with pytest.raises(InvalidParameterError, match="needs an output resolution"):
        target_grid(cube, crs="EPSG:32632")
    with pytest.raises(InvalidParameterError, match="positive"):
        target_grid(cube, resolution=0)


def test_composite_of_scenes_on_different_grids():
    """A 20 m scene offset from the 10 m reference lands on the reference grid before compositing."""
    ref = _cube(np.full((3, 20, 30), 0.2, np.float32))
    coarse = _cube(np.full((3, 10, 15), 0.4, np.float32), res=20.0, x0=400_100.0)
    masks = [
        xr.DataArray(np.zeros(c.shape[1:], np.uint8), dims=("y", "x"), coords=c[0].drop_vars("band").coords)
        .rio.write_crs("EPSG:32633")
        for c in (ref, coarse)
    ]  # fmt: skip
    out = composite([ref, coarse], masks, method="mean", chunks=16).compute()
    assert Grid.of(out["reflectance"]).matches(Grid.of(ref))
    count = out["count"].values
    assert (count[:, :10] == 1).all() and (count[:, 10:] == 2).all()
    np.testing.assert_allclose(out["reflectance"].values[:, :, 10:], 0.3, rtol=1e-6)
    np.testing.assert_allclose(out["reflectance"].values[:, :, :10], 0.2)
