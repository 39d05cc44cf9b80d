"""Bringing scenes and masks onto one pixel grid, lazily.

A :class:`Grid` is a CRS, an affine transform and a shape.  ``target_grid`` picks the grid of
the composite (the first scene's, or one built from a CRS, resolution and bounding box);
``to_grid`` puts a cube on it: unchanged when it is on it already, otherwise through odc-geo's
``xr_reproject``, which is dask-lazy (each output block reads only the source blocks it overlaps),
unlike rioxarray's ``reproject_match``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine
from rasterio.crs import CRS

from s2mask.errors import InvalidParameterError, ProductFormatError

__all__ = ["Grid", "target_grid", "to_grid"]


@dataclass(frozen=True)
class Grid:
    """A north-up pixel grid."""

    crs: CRS
    """Coordinate reference system."""
    transform: Affine
    """Pixel-corner affine transform (x = c + a*col, y = f + e*row)."""
    height: int
    """Number of rows."""
    width: int
    """Number of columns."""

    @classmethod
    def of(cls, cube: xr.DataArray) -> Grid:
        """The grid of a cube that carries a CRS through rioxarray."""
        crs = cube.rio.crs
        if crs is None:
            name = cube.attrs.get("product_id", cube.name)
            raise ProductFormatError(
                f"The scene {name!r} has no CRS; expected a georeferenced cube "
                "(write one with cube.rio.write_crs(...) or open the product with s2mask's readers)."
            )
        return cls(CRS.from_user_input(crs), _transform_of(cube), cube.rio.height, cube.rio.width)

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def resolution(self) -> tuple[float, float]:
        """Pixel size ``(x, y)`` in CRS units (both positive)."""
        return abs(self.transform.a), abs(self.transform.e)

    def geobox(self) -> Any:
        """The odc-geo ``GeoBox`` of this grid."""
        from odc.geo.geobox import GeoBox

        return GeoBox(self.shape, self.transform, self.crs.to_wkt())

    def coords(self) -> dict[str, np.ndarray]:
        """Pixel-centre ``y`` and ``x`` coordinates."""
        t = self.transform
        return {
            "y": t.f + t.e * (np.arange(self.height) + 0.5),
            "x": t.c + t.a * (np.arange(self.width) + 0.5),
        }

    def matches(self, other: Grid, *, tolerance: float = 1e-6) -> bool:
        """Same CRS, same shape, and transforms equal to ``tolerance`` pixels."""
        if self.shape != other.shape or self.crs != other.crs:
            return False
        a, b = self.transform, other.transform
        px = max(self.resolution)
        return all(abs(u - v) <= tolerance * px for u, v in zip(a[:6], b[:6], strict=True))


def _transform_of(cube: xr.DataArray) -> Affine:
    """The affine transform from evenly spaced ``x``/``y`` pixel-centre coords (cheap), else rioxarray's."""
    if "x" in cube.coords and "y" in cube.coords and cube.sizes["x"] > 1 and cube.sizes["y"] > 1:
        x, y = cube["x"].values, cube["y"].values
        dx, dy = (x[-1] - x[0]) / (len(x) - 1), (y[-1] - y[0]) / (len(y) - 1)
        if np.allclose(np.diff(x), dx, rtol=1e-6) and np.allclose(np.diff(y), dy, rtol=1e-6):
            return Affine(dx, 0.0, x[0] - dx / 2, 0.0, dy, y[0] - dy / 2)
    return cube.rio.transform()


def target_grid(
    reference: xr.DataArray,
    *,
    crs: Any = None,
    resolution: float | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    bbox_crs: Any = None,
) -> Grid:
    """The output grid: ``reference``'s grid, or one with the given CRS, resolution and bounds.

    ``bbox`` is ``(minx, miny, maxx, maxy)`` in ``bbox_crs`` (default: the target CRS; pass
    ``"EPSG:4326"`` for longitude/latitude as in a STAC search); it defaults to the reference's
    bounds.  Pixel edges snap to multiples of the resolution, as Sentinel-2 tiles do.
    """
    ref = Grid.of(reference)
    if crs is None and resolution is None and bbox is None:
        return ref
    from odc.geo.geobox import GeoBox
    from odc.geo.geom import BoundingBox

    dst_crs = CRS.from_user_input(crs) if crs is not None else ref.crs
    res = float(resolution) if resolution is not None else None
    if res is not None and not res > 0:
        raise InvalidParameterError(f"The output resolution is {resolution}; expected a positive pixel size.")
    if bbox is None:
        left, bottom, right, top = reference.rio.bounds()
        box = BoundingBox(left, bottom, right, top, ref.crs.to_wkt())
    else:
        minx, miny, maxx, maxy = (float(v) for v in bbox)
        if not (minx < maxx and miny < maxy):
            raise InvalidParameterError(
                f"The bounding box {tuple(bbox)} is empty; expected (minx, miny, maxx, maxy) with min < max."
            )
        src = CRS.from_user_input(bbox_crs) if bbox_crs is not None else dst_crs
        box = BoundingBox(minx, miny, maxx, maxy, src.to_wkt())
    box = box.to_crs(dst_crs.to_wkt())
    if res is None:
        if dst_crs != ref.crs:
            raise InvalidParameterError(
                f"A new CRS ({dst_crs.to_string()}) needs an output resolution; give resolution= in its units."
            )
        res = max(ref.resolution)
    gbox = GeoBox.from_bbox(box, dst_crs.to_wkt(), resolution=res, tight=False)
    return Grid(dst_crs, gbox.affine, *gbox.shape)


def to_grid(
    cube: xr.DataArray,
    grid: Grid,
    *,
    resampling: str = "bilinear",
    nodata: float | int = np.nan,
) -> xr.DataArray:
    """``cube`` on ``grid``, lazily; returned unchanged when it is on ``grid`` already.

    Use ``resampling="nearest"`` and ``nodata=255`` for masks; reflectance uses ``bilinear`` and NaN.
    """
    if Grid.of(cube).matches(grid):
        return cube
    from odc.geo.xr import xr_reproject

    out = xr_reproject(cube, grid.geobox(), resampling=resampling, dst_nodata=nodata)
    out.attrs.update(cube.attrs)
    return out
