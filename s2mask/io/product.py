"""``open_product``: one entry point for every local product s2mask reads.

Dispatch by what the path is:

* a ``.SAFE`` folder (or any folder holding ``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml``),
  or that metadata file itself -> :func:`s2mask.io.safe.open_safe`;
* a ``.zip`` -> a zipped SAFE, read in place through ``/vsizip/``;
* a GeoTIFF / COG (``.tif``, ``.tiff``, or anything GDAL opens as GTiff/VRT) or a
  ``/vsi...`` path -> :func:`s2mask.io.geotiff.open_geotiff`.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import rasterio
import xarray as xr

from s2mask.errors import ProductFormatError, ProductNotFoundError
from s2mask.io._lazy import check_readable, reader_of
from s2mask.io.geotiff import open_geotiff
from s2mask.io.safe import open_safe

__all__ = ["open_product", "product_kind", "read_preview"]

_TIFF_SUFFIXES = {".tif", ".tiff", ".gtiff", ".vrt"}
_TIFF_DRIVERS = {"GTiff", "COG", "VRT"}


def product_kind(path: str | os.PathLike[str]) -> str:
    """``"safe"``, ``"safe-zip"`` or ``"geotiff"`` for ``path``, or raise why it is none of them."""
    text = str(path)
    if text.startswith("/vsi"):
        return "geotiff"
    p = Path(text).expanduser()
    if not p.exists():
        raise ProductNotFoundError(f"The product {p} does not exist; check the path.")
    if p.is_dir():
        if (
            (p / "MTD_MSIL1C.xml").is_file()
            or (p / "MTD_MSIL2A.xml").is_file()
            or p.suffix.upper() == ".SAFE"
        ):
            return "safe"
        raise ProductFormatError(
            f"The folder {p} is not a Sentinel-2 .SAFE product (no MTD_MSIL1C.xml or MTD_MSIL2A.xml inside); "
            "pass a .SAFE folder, a zipped .SAFE or a GeoTIFF."
        )
    if p.name in ("MTD_MSIL1C.xml", "MTD_MSIL2A.xml"):
        return "safe"
    if p.suffix.lower() == ".zip" or zipfile.is_zipfile(p):
        return "safe-zip"
    if p.suffix.lower() in _TIFF_SUFFIXES:
        return "geotiff"
    check_readable(str(p), probe=False)
    with rasterio.open(p) as ds:
        driver = ds.driver
    if driver in _TIFF_DRIVERS:
        return "geotiff"
    raise ProductFormatError(
        f"{p} is a {driver} raster; s2mask reads .SAFE folders, zipped .SAFE products and GeoTIFF/COG files. "
        "Pass the whole .SAFE product rather than one of its band files, or convert to GeoTIFF."
    )


def open_product(
    path: str | os.PathLike[str],
    *,
    bands: str | tuple[str, ...] | list[str] | None = None,
    resolution: int | None = None,
    resampling: str = "nearest",
    chunks: int | tuple[int, int] = 2048,
    scale: float | None = None,
    offset: float | None = None,
    band_names: tuple[str, ...] | list[str] | None = None,
) -> xr.DataArray:
    """Open a SAFE folder, zipped SAFE or GeoTIFF as lazy reflectance: the s2mask reader contract.

    Returns a dask-backed float32 ``xr.DataArray`` with dims ``("band", "y", "x")``: band
    coordinates are ESA names (``bands`` in that order, or every band the product has in
    ESA order), ``y``/``x`` pixel centres; reflectance in [0, 1] with nodata as NaN; chunked
    ``(all bands, chunks, chunks)``; ``.rio.crs`` and ``.rio.transform()`` set; attrs
    ``product_id``, ``level`` (``"L1C"``, ``"L2A"`` or None), ``processing_baseline`` and
    ``source``.  Nothing but metadata and file headers is read until the array is computed.

    ``bands`` may be a preset name (``"s2-9"``), a comma list (``"B2,B3"``) or a sequence.
    ``resolution`` (10, 20 or 60 m) is the output grid; ``None`` keeps the product's own: the
    10 m tile grid of a SAFE product, the pixel size of a GeoTIFF.  ``scale``, ``offset`` and ``band_names`` describe GeoTIFF inputs and are ignored for
    SAFE products, whose metadata carries their own scaling and band names.

    Raises:
        ProductNotFoundError: ``path`` does not exist.
        ProductFormatError: ``path`` is not a product s2mask reads.
        CorruptDataError: a file of the product is empty, truncated or corrupt.
        BandMismatchError: a requested band is not in the product.
        InvalidParameterError: ``resolution``, ``resampling`` or ``chunks`` is invalid.
    """
    kind = product_kind(path)
    if kind == "geotiff":
        return open_geotiff(
            path,
            bands=bands,
            resolution=resolution,
            resampling=resampling,
            chunks=chunks,
            scale=scale,
            offset=offset,
            band_names=band_names,
        )
    p = Path(path).expanduser()
    if p.is_file() and p.suffix.lower() == ".xml":
        p = p.parent
    return open_safe(p, bands=bands, resolution=resolution or 10, resampling=resampling, chunks=chunks)


def read_preview(cube: xr.DataArray, *, bands: Sequence[str], shape: tuple[int, int]) -> xr.DataArray | None:
    """``bands`` of a reader's cube, read once at ``shape`` from the files' reduced-resolution levels.

    The readers' preview contract (used by the quick-look): the product stays opened once,
    and each band file is read at ``shape`` with average resampling, so GDAL decodes a COG's
    overviews or a JPEG 2000's wavelet levels instead of the full-resolution pixels.  Pixels
    whose averaged DN is nodata are NaN.  Returns ``None`` when ``cube`` is not exactly what a
    reader returned (it was selected or computed on since) or a band file has no overviews:
    the caller then reduces the full-resolution cube itself.
    """
    reader = reader_of(cube)
    names = [str(b) for b in cube["band"].values] if reader is not None else []
    if reader is None or not set(bands) <= set(names):
        return None
    index = [names.index(b) for b in bands]
    if not reader.has_overviews(index):
        return None
    data = reader.preview(shape, index)
    return xr.DataArray(data, dims=("band", "y", "x"), coords={"band": list(bands)})
