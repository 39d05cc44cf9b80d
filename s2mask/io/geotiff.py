"""Reading multiband Sentinel-2 GeoTIFFs / COGs as lazy reflectance.

Band names come from ``band_names``, else from the file's band descriptions, else (13
bands) the ESA order.  ``reflectance = DN * scale + offset`` (default ``DN / 10000``),
the file's nodata value (default 0) becomes NaN and the result is clipped to [0, 1].
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import rasterio
import xarray as xr
from affine import Affine

from s2mask.bands import BAND_NAMES, canonical_band, resolve_bands
from s2mask.errors import (
    BandMismatchError,
    CorruptDataError,
    InvalidParameterError,
    ProductFormatError,
    ProductNotFoundError,
    S2MaskError,
)
from s2mask.io._lazy import BandSource, LazyReflectance, check_readable, to_dataarray

__all__ = ["DEFAULT_SCALE", "open_geotiff", "geotiff_band_names"]

DEFAULT_SCALE = 1e-4
"""Reflectance per DN of Sentinel-2 L1C/L2A DN (quantification 10000)."""


def geotiff_band_names(
    descriptions: tuple[str | None, ...], band_names: tuple[str, ...] | list[str] | None, path: str
) -> tuple[str, ...]:
    """ESA names of the bands of a file with ``len(descriptions)`` bands (see module docstring)."""
    count = len(descriptions)
    if band_names is not None:
        names = tuple(canonical_band(b) for b in band_names)
        if len(names) != count:
            raise BandMismatchError(
                f"{len(names)} band names were given ({', '.join(names)}) but {path} has {count} bands; "
                "give one name per band of the file, in file order."
            )
    elif all(descriptions):
        try:
            names = tuple(canonical_band(d) for d in descriptions)  # type: ignore[arg-type]
        except S2MaskError:
            names = ()
    else:
        names = ()
    if not names:
        if count != len(BAND_NAMES):
            raise ProductFormatError(
                f"{path} has {count} bands without Sentinel-2 band descriptions; expected 13 bands in ESA order "
                "or descriptions such as 'B02'. Pass the band names (CLI: --bands B02,B03,B04,...)."
            )
        names = BAND_NAMES
    if len(set(names)) != len(names):
        raise ProductFormatError(f"{path} names a band twice ({', '.join(names)}); expected each band once.")
    return names


def open_geotiff(
    path: str | os.PathLike[str],
    *,
    bands: str | tuple[str, ...] | list[str] | None = None,
    resolution: float | None = None,
    resampling: str = "nearest",
    chunks: int | tuple[int, int] = 2048,
    scale: float | None = None,
    offset: float | None = None,
    band_names: tuple[str, ...] | list[str] | None = None,
) -> xr.DataArray:
    """Open a multiband GeoTIFF/COG as lazy reflectance (the reader contract of :mod:`s2mask.io`).

    Returns a dask-backed float32 ``xr.DataArray`` ``("band", "y", "x")``, chunked
    ``(bands, chunks, chunks)``, with CRS, transform and attrs ``product_id`` (file stem),
    ``level`` (None), ``processing_baseline`` (None) and ``source``.  ``resolution`` (metres)
    resamples a projected file whose pixel size differs; None, or a geographic CRS, keeps
    the file's own grid.
    """
    if not str(path).startswith("/vsi") and not Path(path).exists():
        raise ProductNotFoundError(f"The file {path} does not exist; check the path.")
    scale = DEFAULT_SCALE if scale is None else float(scale)
    offset = 0.0 if offset is None else float(offset)
    if not math.isfinite(scale) or scale == 0 or not math.isfinite(offset):
        raise InvalidParameterError(
            f"scale={scale}, offset={offset}; expected finite numbers and a non-zero scale."
        )
    src = str(path)
    check_readable(src)
    with rasterio.open(src) as ds:
        crs, transform, nodata = ds.crs, ds.transform, ds.nodata
        descriptions, shape, count = ds.descriptions, (ds.height, ds.width), ds.count
    if crs is None:
        raise ProductFormatError(
            f"{src} has no CRS; expected a georeferenced GeoTIFF. Assign one first "
            "(e.g. gdal_edit.py -a_srs EPSG:32631) or use the SAFE product."
        )
    if transform.b != 0 or transform.d != 0:
        raise ProductFormatError(
            f"{src} has a rotated geotransform {tuple(transform)[:6]}; expected a north-up grid."
        )
    names = geotiff_band_names(descriptions, band_names, src)
    wanted = names if bands is None else resolve_bands(bands)
    missing = [b for b in wanted if b not in names]
    if missing:
        raise BandMismatchError(
            f"{src} lacks band(s) {', '.join(missing)}; it has {', '.join(names)}. Choose bands the file has, "
            "or pass the correct band names (CLI: --bands) if its bands are mislabelled."
        )
    file_res = (abs(transform.e), abs(transform.a))
    grid_shape, grid_res, grid_transform = _target_grid(shape, file_res, transform, crs, resolution)
    nd = 0.0 if nodata is None else float(nodata)
    sources = tuple(
        BandSource(
            path=src,
            index=names.index(b) + 1,
            shape=shape,
            res=file_res,
            add=offset / scale,
            divisor=1.0 / scale,
            nodata=nd,
        )
        for b in wanted
    )
    if count < 1:
        raise CorruptDataError(f"{src} has no bands; expected a multiband raster.")
    reader = LazyReflectance(sources, grid_shape, grid_res, resampling)
    attrs = {"product_id": Path(src).stem, "level": None, "processing_baseline": None, "source": src}
    mtime = Path(src).stat().st_mtime if Path(src).exists() else 0.0
    return to_dataarray(
        reader,
        band_names=wanted,
        transform=grid_transform,
        crs=crs.to_string(),
        chunks=chunks,
        attrs=attrs,
        token=(src, mtime),
    )


def _target_grid(
    shape: tuple[int, int],
    file_res: tuple[float, float],
    transform: Affine,
    crs: rasterio.crs.CRS,
    resolution: float | None,
) -> tuple[tuple[int, int], tuple[float, float], Affine]:
    if resolution is None or crs.is_geographic:
        return shape, file_res, transform
    if not (isinstance(resolution, (int, float)) and resolution > 0):
        raise InvalidParameterError(f"resolution is {resolution!r}; expected a positive number of metres.")
    if all(math.isclose(r, resolution, rel_tol=1e-6) for r in file_res):
        return shape, file_res, transform
    rows = max(1, round(shape[0] * file_res[0] / resolution))
    cols = max(1, round(shape[1] * file_res[1] / resolution))
    grid_transform = Affine(
        math.copysign(resolution, transform.a),
        0.0,
        transform.c,
        0.0,
        math.copysign(resolution, transform.e),
        transform.f,
    )
    return (rows, cols), (float(resolution), float(resolution)), grid_transform
