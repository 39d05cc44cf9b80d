"""Writing composites, and the path-level pipeline behind ``s2mask composite``.

``write_composite`` streams a lazy composite into one multi-band uint16 COG (reflectance bands,
``count`` and for best-pixel ``source``) through :func:`s2mask.io.cog.write_cog`.
``composite_products`` opens products, reuses mask COGs or computes masks with the engine, and
writes the COG and a quick-look PNG (made from the written COG's overviews, so the composite is
computed only once).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from s2mask.bands import DEFAULT_BANDS, resolve_bands
from s2mask.composite.core import DateLike, composite, to_uint16
from s2mask.composite.grid import target_grid
from s2mask.errors import InvalidParameterError, ProductNotFoundError

__all__ = ["CompositeRun", "composite_tags", "write_composite", "composite_products", "quicklook_path"]

_RGB = ("B04", "B03", "B02")


def composite_tags(result: xr.Dataset, *, sources: Sequence[str] = ()) -> dict[str, str]:
    """GeoTIFF tags describing a composite: method, buffer, scale, the scenes and their dates."""
    from s2mask import __version__

    tags = {
        "METHOD": str(result.attrs.get("method", "")),
        "BUFFER_PIXELS": str(result.attrs.get("buffer", 0)),
        "SCENES": str(result.attrs.get("scenes", "")),
        "SCALE": "0.0001",
        "NODATA": "0",
        "S2MASK_VERSION": __version__,
    }
    if result.attrs.get("target_date"):
        tags["TARGET_DATE"] = str(result.attrs["target_date"])
    for i, d in enumerate(result.attrs.get("dates", []), start=1):
        tags[f"SCENE_{i}_DATE"] = str(d)
    for i, s in enumerate(sources, start=1):
        tags[f"SCENE_{i}"] = str(s)
    return tags


def write_composite(
    result: xr.Dataset,
    path: str | Path,
    *,
    bands: Sequence[str] | None = None,
    sources: Sequence[str] = (),
    overwrite: bool = False,
    progress: Any = None,
    scheduler: Any = None,
) -> Path:
    """Stream ``result`` (from :func:`composite`) into one uint16 COG; return its path.

    Bands: reflectance x 10000 (``bands`` or all), then ``count``, then for best-pixel ``source``
    (1-based scene number, listed in the ``SCENE_<n>`` / ``SCENE_<n>_DATE`` tags).  Nodata is 0 in
    every band.  Overviews are averaged for median/mean and nearest for best-pixel (so an overview
    pixel keeps one scene's spectrum and its ``source``).
    """
    from s2mask.io.cog import write_cog

    data = to_uint16(result, bands=bands)
    resampling = "nearest" if "source_index" in result else "average"
    return write_cog(
        data,
        path,
        nodata=0,
        dtype="uint16",
        band_descriptions=[str(b) for b in data["band"].values],
        tags=composite_tags(result, sources=sources),
        overview_resampling=resampling,
        overwrite=overwrite,
        progress=progress,
        scheduler=scheduler,
    )


@dataclass(frozen=True)
class CompositeRun:
    """What ``composite_products`` wrote."""

    cog: Path
    """The multi-band composite COG."""
    quicklook: Path | None
    """The quick-look PNG, if one was written."""
    scenes: int
    """Number of scenes composited."""
    seconds: float
    """Wall time of the whole run."""


def quicklook_path(out: str | Path) -> Path:
    """Where the quick-look of ``out`` goes: ``<stem>.png`` beside it."""
    return Path(out).with_suffix(".png")


_PRODUCT_DATE = re.compile(r"_(\d{8}T\d{6})_")


def _with_date(cube: xr.DataArray) -> xr.DataArray:
    """Give ``cube`` a ``datetime`` attribute from its product id (``S2A_MSIL2A_20240601T101031_...``)."""
    if cube.attrs.get("datetime"):
        return cube
    found = _PRODUCT_DATE.search(str(cube.attrs.get("product_id", "")))
    if found is None:
        return cube
    s = found.group(1)
    cube.attrs["datetime"] = f"{s[:4]}-{s[4:6]}-{s[6:8]}T{s[9:11]}:{s[11:13]}:{s[13:15]}"
    return cube


def _load_model(model: Any) -> Any:
    from s2mask.model import load_model  # imports torch: only when a model must be loaded

    return load_model(model or "s2-9")


def _open_mask(path: str | Path, chunks: int) -> xr.DataArray:
    import rioxarray

    if not Path(path).exists():
        raise ProductNotFoundError(
            f"Mask file {path} does not exist; give s2mask mask COGs, one per product."
        )
    return rioxarray.open_rasterio(path, chunks=chunks).squeeze("band", drop=True)


def _read_quicklook_source(cog: Path, max_size: int = 2048) -> tuple[xr.DataArray, xr.DataArray]:
    """RGB reflectance and a nodata mask from the written COG's smallest overview above ``max_size``."""
    import rasterio
    import rioxarray

    with rasterio.open(cog) as src:
        names = list(src.descriptions)
        levels = src.overviews(1)
        size = max(src.height, src.width)
    level = None
    for i, factor in enumerate(levels):
        if size / factor >= max_size:
            level = i
    da_ = (
        rioxarray.open_rasterio(cog, overview_level=level)
        if level is not None
        else rioxarray.open_rasterio(cog)
    )
    da_ = da_.assign_coords(band=names)
    rgb = da_.sel(band=list(_RGB)).astype(np.float32)
    rgb = rgb.where(rgb > 0) / 10000.0
    count = da_.sel(band="count")
    mask = xr.where(count == 0, np.uint8(255), np.uint8(0)).astype(np.uint8)
    return rgb, mask


def composite_products(
    products: Sequence[str | Path],
    out: str | Path,
    *,
    masks: Sequence[str | Path] | None = None,
    model: Any = None,
    bands: str | Sequence[str] | None = None,
    method: str = "median",
    buffer: int = 0,
    target_date: DateLike | None = None,
    resolution: int = 10,
    crs: Any = None,
    grid_resolution: float | None = None,
    bbox: tuple[float, float, float, float] | None = None,
    bbox_crs: Any = None,
    chunks: int = 1024,
    quicklook: bool = True,
    overwrite: bool = False,
    progress: Any = None,
) -> CompositeRun:
    """Composite products (``.SAFE``, GeoTIFF) into ``out`` (COG) and ``<out>.png`` (quick-look).

    Masks are read from ``masks`` (s2mask mask COGs, one per product) or computed with ``model``
    (a loaded model or a shipped model name, default ``"s2-9"``).  The grid is the first
    product's unless ``crs``/``grid_resolution``/``bbox`` say otherwise (see
    :func:`~s2mask.composite.grid.target_grid`).  ``bands`` (a preset or names, default ``s2-9``)
    are the output bands; the quick-look needs B04, B03 and B02 among them.
    """
    from s2mask._atomic import check_target
    from s2mask.io.product import open_product

    t0 = time.perf_counter()
    if not products:
        raise InvalidParameterError(
            "No products were given to composite; give at least one .SAFE or GeoTIFF."
        )
    if masks is not None and len(masks) != len(products):
        raise InvalidParameterError(
            f"{len(masks)} masks were given for {len(products)} products; give one mask COG per product, in order."
        )
    out_bands = resolve_bands(bands) if bands is not None else DEFAULT_BANDS
    do_quicklook = quicklook and all(b in out_bands for b in _RGB)
    check_target(out, overwrite=overwrite)
    if do_quicklook:
        check_target(quicklook_path(out), overwrite=overwrite)

    # masks: reused or computed
    loaded = None
    if masks is None:
        loaded = model if hasattr(model, "predict_proba") else _load_model(model)
    read_bands = tuple(dict.fromkeys((*out_bands, *(loaded.bands if loaded else ()))))
    cubes = [
        _with_date(open_product(p, bands=read_bands, resolution=resolution, chunks=2048)) for p in products
    ]
    probs = None
    if loaded is not None:
        from s2mask.engine import predict

        probs = [predict(c, loaded) for c in cubes]
        mask_arrays = None
    else:
        mask_arrays = [_open_mask(m, 2048) for m in masks]

    # composite on one grid and write
    grid = target_grid(cubes[0], crs=crs, resolution=grid_resolution, bbox=bbox, bbox_crs=bbox_crs)
    dates = [c.attrs.get("datetime") for c in cubes]
    result = composite(
        [c.sel(band=list(out_bands)) for c in cubes], mask_arrays,
        dates=dates if all(dates) else None, probabilities=probs, method=method,
        buffer=buffer, target_date=target_date, grid=grid, chunks=chunks,
    )  # fmt: skip
    sources = [
        str(c.attrs.get("product_id") or Path(str(p)).name) for c, p in zip(cubes, products, strict=True)
    ]
    cog = write_composite(
        result, out, bands=out_bands, sources=sources, overwrite=overwrite, progress=progress
    )

    # quick-look from the written COG's overviews
    png = None
    if do_quicklook:
        from s2mask.quicklook import write_quicklook

        rgb, nodata = _read_quicklook_source(cog)
        png = write_quicklook(rgb, nodata, quicklook_path(out), overwrite=overwrite)
        png = Path(png) if png is not None else quicklook_path(out)
    return CompositeRun(cog, png, len(cubes), round(time.perf_counter() - t0, 3))
