"""Writing composites, and the path-level pipeline behind ``s2mask composite``.

``write_composite`` streams a lazy composite into one multi-band uint16 COG (reflectance bands,
``count``, and for best-pixel, medoid and first ``source`` and ``date``) through
:func:`s2mask.io.cog.write_cog`, with per-band scale/offset.
``composite_products`` opens products, reuses mask COGs or computes masks with the engine, and
writes the COG and a quick-look PNG (made from the written COG's overviews, so the composite is
computed only once).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from s2mask.bands import DEFAULT_BANDS, resolve_bands
from s2mask.composite.core import REFLECTANCE_SCALE, DateLike, composite, to_uint16
from s2mask.composite.grid import target_grid
from s2mask.errors import InvalidParameterError, ProductNotFoundError
from s2mask.options import EngineOptions, InputOptions

__all__ = [
    "CompositeOptions",
    "CompositeRun",
    "composite_products",
    "composite_stac",
    "composite_tags",
    "quicklook_path",
    "write_composite",
]

_RGB = ("B04", "B03", "B02")

_LAYER_TEXT = {
    "count": ("count", "clear observations used (scale 1)"),
    "source": ("source_index", "1-based number of the chosen scene, see SCENE_<n> (0: none)"),
    "date": ("date", "days since 1970-01-01 of the chosen observation (0: none)"),
}
"""Band name -> (dataset variable, what it holds), written as ``<BAND>_BAND`` tags."""


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
    if "percentile" in result.attrs:
        tags["PERCENTILE"] = f"{result.attrs['percentile']:g}"
    if result.attrs.get("order"):
        tags["ORDER"] = str(result.attrs["order"])
        tags["ORDER_SCENES"] = ",".join(str(i + 1) for i in result.attrs.get("order_scenes", []))
    tags["MIN_OBSERVATIONS"] = str(result.attrs.get("min_observations", 1))
    if result.attrs.get("max_observations"):
        tags["MAX_OBSERVATIONS"] = str(result.attrs["max_observations"])
    for band, (var, text) in _LAYER_TEXT.items():
        if var in result:
            tags[f"{band.upper()}_BAND"] = text
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
    compute: Any = None,
    scheduler: Any = None,
) -> Path:
    """Stream ``result`` (from :func:`composite`) into one uint16 COG; return its path.

    Bands: reflectance x 10000 (``bands`` or all; scale 0.0001), then ``count``, then for the
    methods that pick an observation ``source`` (1-based scene number, listed in the ``SCENE_<n>`` /
    ``SCENE_<n>_DATE`` tags) and, with dates, ``date`` (days since 1970-01-01), all scale 1.  Band
    descriptions are the band names; each band carries its scale and offset (GDAL reads them;
    ``rasterio``'s ``scales``).  Nodata is 0 in every band.  Overviews are averaged for the
    statistics (median, mean, percentile, geomedian) and nearest for the methods that pick an
    observation (so an overview pixel keeps one scene's spectrum, ``source`` and ``date``).
    ``compute`` and ``scheduler`` go to ``write_cog``; ``compute`` defaults to the engine's
    :func:`~s2mask.engine.compute.compute_blocks`.
    """
    from s2mask.engine import compute_blocks
    from s2mask.io.cog import write_cog

    data = to_uint16(result, bands=bands)
    names = [str(b) for b in data["band"].values]
    return write_cog(
        data, path, nodata=0, dtype="uint16", band_descriptions=names,
        tags=composite_tags(result, sources=sources),
        scales=[1.0 / REFLECTANCE_SCALE if n not in _LAYER_BANDS else 1.0 for n in names],
        offsets=[0.0] * len(names),
        overview_resampling="nearest" if "source_index" in result else "average",
        overwrite=overwrite, progress=progress, compute=compute or compute_blocks, scheduler=scheduler,
    )  # fmt: skip


_LAYER_BANDS = ("count", "source", "date")


@dataclass(frozen=True, kw_only=True)
class CompositeOptions(InputOptions, EngineOptions):
    """How scenes become a composite (shared by ``composite_products`` and ``composite_stac``).

    The input and model options (``input_bands``, ``scale``, ``offset``, ``resolution``,
    ``resampling``, ``chunks``, ``window``, ``overlap``, ``batch_size``) are those of every command
    (:mod:`s2mask.options`); ``bands`` are the composite's output bands.
    """

    method: str = "median"
    """``median`` (default), ``mean``, ``percentile``, ``best-pixel``, ``medoid``, ``geomedian`` or ``first``."""
    percentile: float | None = None
    """``q`` (0-100) of the ``percentile`` method."""
    buffer: int = 0
    """Grow cloud and shadow by this many pixels before compositing."""
    order: str | None = None
    """Scene order (``input``, ``least-cloudy``, ``oldest``, ``newest``, ``target-date``): ``first``
    takes the first clear scene in it, best-pixel breaks ties by it, ``max_observations`` counts in it."""
    target_date: DateLike | None = None
    """The date of ``order="target-date"`` (the default order when given): closest scene first."""
    min_observations: int = 1
    """Pixels with fewer clear observations are nodata."""
    max_observations: int | None = None
    """Use at most N clear observations per pixel; blocks stop reading scenes once complete."""
    bands: tuple[str, ...] = DEFAULT_BANDS
    """Output bands (the quick-look needs B04, B03, B02 among them)."""
    crs: Any = None
    """Output CRS (default: the first scene's); needs ``grid_resolution`` when it differs."""
    grid_resolution: float | None = None
    """Output pixel size in CRS units (default: the first scene's)."""
    bbox: tuple[float, float, float, float] | None = None
    """Output bounds ``(minx, miny, maxx, maxy)`` in ``bbox_crs`` (default: the first scene's)."""
    bbox_crs: Any = None
    """CRS of ``bbox`` (default: the output CRS; ``"EPSG:4326"`` for lon/lat)."""
    quicklook: bool = True
    """Also write ``<out>.png`` (true colour, nodata marked)."""
    overwrite: bool = False
    """Replace existing outputs."""
    progress: Any = None
    """``True`` for a progress bar of the written blocks (see ``write_cog``)."""


@dataclass(frozen=True)
class CompositeRun:
    """What ``composite_products`` or ``composite_stac`` wrote."""

    cog: Path
    """The multi-band composite COG."""
    quicklook: Path | None
    """The quick-look PNG, if one was written."""
    scenes: tuple[str, ...]
    """Product ids of the composited scenes, in input order (``source`` band value - 1)."""
    seconds: float
    """Wall time of the whole run."""


def quicklook_path(out: str | Path) -> Path:
    """Where the quick-look of ``out`` goes: ``<stem>.png`` beside it."""
    return Path(out).with_suffix(".png")


def _with_date(cube: xr.DataArray) -> xr.DataArray:
    """Give ``cube`` a ``datetime`` attribute from its product id (``S2A_MSIL2A_20240601T101031_...``)."""
    from s2mask.stac_out import acquisition_datetime  # the one reading of a product's time

    if cube.attrs.get("datetime"):
        return cube
    when = acquisition_datetime(cube.attrs)
    if when is not None:
        cube.attrs["datetime"] = when.strftime("%Y-%m-%dT%H:%M:%S")
    return cube


def _open_mask(path: str | Path, chunks: int) -> xr.DataArray:
    import rioxarray

    if not Path(path).exists():
        raise ProductNotFoundError(
            f"Mask file {path} does not exist; give s2mask mask COGs, one per product."
        )
    return rioxarray.open_rasterio(path, chunks=chunks).squeeze("band", drop=True)


def _read_quicklook_source(
    cog: Path, max_size: int = 2048
) -> tuple[xr.DataArray, xr.DataArray, dict[str, np.ndarray]]:
    """RGB reflectance, a nodata mask and the ``count`` (and ``date``) layers from the written COG's
    smallest overview above ``max_size``."""
    import warnings

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
    with warnings.catch_warnings():  # "Scales differ across bands": reflectance 1e-4, the rest 1, read as DN
        warnings.filterwarnings("ignore", message="Scales differ", category=UserWarning)
        da_ = rioxarray.open_rasterio(cog, overview_level=level, mask_and_scale=False)
    da_ = da_.assign_coords(band=names)
    rgb = da_.sel(band=list(_RGB)).astype(np.float32)
    rgb = rgb.where(rgb > 0) / 10000.0
    missing = (da_.sel(band=list(_RGB)) == 0).any("band")  # reflectance is 0 only where nodata
    mask = xr.where(missing, np.uint8(255), np.uint8(0)).astype(np.uint8)
    layers = {name: da_.sel(band=name).values for name in ("count", "date") if name in names}
    return rgb, mask, layers


def composite_products(
    products: Sequence[str | Path],
    out: str | Path,
    *,
    masks: Sequence[str | Path] | None = None,
    model: Any = None,
    options: CompositeOptions = CompositeOptions(),
) -> CompositeRun:
    """Composite products (``.SAFE``, zipped SAFE, GeoTIFF) into ``out`` (COG) and ``<out>.png``.

    Masks are read from ``masks`` (s2mask mask COGs, one per product, in order) or computed
    with ``model`` (a loaded model or a shipped model name, default ``"s2-9"``).
    """
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
    _check_outputs(out, options)
    loaded = None if masks is not None else _model(model)
    read = _read_bands(options, loaded)
    mask_arrays = None if masks is None else [_open_mask(m, options.chunks) for m in masks]
    cubes = [_with_date(open_product(p, bands=read, **options.read_kwargs())) for p in products]
    for cube, p in zip(cubes, products, strict=True):
        cube.attrs.setdefault("product_id", Path(str(p)).name)
    return _composite_cubes(cubes, out, masks=mask_arrays, model=loaded, options=options, started=t0)


def composite_stac(
    *,
    url: str,
    collection: str,
    bbox: Any,
    date: Any,
    out: str | Path,
    model: Any = None,
    max_cloud: float | None = None,
    limit: int | None = None,
    options: CompositeOptions = CompositeOptions(),
) -> CompositeRun:
    """Search ``collection`` at the STAC API ``url`` and composite what it finds into ``out``.

    ``bbox`` (W,S,E,N degrees) and ``date`` (``2024-06-01/2024-08-31``) are parsed as in
    ``s2mask stac``; every item is read lazily, cropped to ``bbox``, and masked with ``model``.
    Unless ``options`` give another grid, the output covers ``bbox`` on the first item's grid.
    """
    from dataclasses import replace

    from s2mask.io.stac import open_stac_item, search_items
    from s2mask.params import parse_bbox

    t0 = time.perf_counter()
    _check_outputs(out, options)
    items = search_items(
        url=url, collection=collection, bbox=bbox, date=date, max_cloud=max_cloud, limit=limit
    )
    loaded = _model(model)
    read = _read_bands(options, loaded)
    box = parse_bbox(bbox)
    cubes = [
        open_stac_item(
            item,
            bands=read,
            resolution=options.resolution or 10,
            bbox=box,
            chunks=options.chunks,
            resampling=options.resampling,
        )
        for item in items
    ]
    for cube, item in zip(cubes, items, strict=True):  # for order="least-cloudy"
        cloud = item.properties.get("eo:cloud_cover")
        if cloud is not None:
            cube.attrs.setdefault("eo:cloud_cover", cloud)
    if options.bbox is None and options.crs is None:
        options = replace(options, bbox=box.as_tuple(), bbox_crs="EPSG:4326")
    return _composite_cubes(cubes, out, masks=None, model=loaded, options=options, started=t0)


def _check_outputs(out: str | Path, options: CompositeOptions) -> None:
    """Refuse existing outputs before any work."""
    from s2mask._atomic import check_targets, ensure_folder
    from s2mask.stac_out import item_path

    ensure_folder(Path(out).parent)
    png = quicklook_path(out) if _wants_quicklook(options) else None
    check_targets([out, png, item_path(out)], overwrite=options.overwrite)


def _wants_quicklook(options: CompositeOptions) -> bool:
    return options.quicklook and all(b in resolve_bands(options.bands) for b in _RGB)


def _model(model: Any) -> Any:
    if hasattr(model, "predict_proba"):
        return model
    from s2mask.model import load_model  # imports torch: only when a model must be loaded

    return load_model(model or "s2-9")


def _read_bands(options: CompositeOptions, model: Any) -> tuple[str, ...]:
    """Output bands first, then any the model needs besides."""
    bands = resolve_bands(options.bands)
    return tuple(dict.fromkeys((*bands, *(model.bands if model is not None else ()))))


def _composite_cubes(
    cubes: list[xr.DataArray],
    out: str | Path,
    *,
    masks: list[xr.DataArray] | None,
    model: Any,
    options: CompositeOptions,
    started: float,
) -> CompositeRun:
    """Predict masks if needed, composite on the target grid, write the COG and the quick-look."""
    from s2mask._atomic import OutputTransaction
    from s2mask.stac_out import item_path, stage_composite_item

    bands = resolve_bands(options.bands)
    probs = None
    if masks is None:
        from s2mask.engine import predict

        probs = [predict(c, model, **options.predict_kwargs()) for c in cubes]
    grid = target_grid(
        cubes[0],
        crs=options.crs,
        resolution=options.grid_resolution,
        bbox=options.bbox,
        bbox_crs=options.bbox_crs,
    )
    dates = [c.attrs.get("datetime") for c in cubes]
    result = composite(
        [c.sel(band=list(bands)) for c in cubes], masks, probabilities=probs, method=options.method,
        percentile=options.percentile, buffer=options.buffer, order=options.order,
        target_date=options.target_date, dates=dates if all(dates) else None,
        min_observations=options.min_observations, max_observations=options.max_observations,
        grid=grid, chunks=options.chunks,
    )  # fmt: skip
    sources = tuple(str(c.attrs.get("product_id", i)) for i, c in enumerate(cubes))
    targets = {"composite": Path(out).expanduser().absolute()}
    if _wants_quicklook(options):
        targets["quicklook"] = quicklook_path(targets["composite"])
    targets["stac_item"] = item_path(targets["composite"])  # the composite's STAC Item (s2mask.stac_out)
    # one transaction: the quick-look, then the composite, or neither
    with OutputTransaction(targets, overwrite=options.overwrite, last="composite") as outputs:
        write_composite(
            result, outputs.staged["composite"], bands=bands, sources=sources, progress=options.progress
        )
        if "quicklook" in targets:
            from s2mask.quicklook import composite_legend, write_quicklook

            rgb, nodata, layers = _read_quicklook_source(outputs.staged["composite"])
            legend = composite_legend(
                layers["count"], nodata, dates=result.attrs.get("dates", []), date_band=layers.get("date"),
                min_observations=options.min_observations,
            )  # fmt: skip
            write_quicklook(rgb, nodata, outputs.staged["quicklook"], legend=legend)
        stage_composite_item(outputs, cubes, method=options.method)
        outputs.publish()
    return CompositeRun(
        targets["composite"], targets.get("quicklook"), sources, round(time.perf_counter() - started, 3)
    )
