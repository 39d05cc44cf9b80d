"""The one place that writes rasters: lazy ``xr.DataArray`` -> validated Cloud-Optimized GeoTIFF.

:func:`write_cog` never loads the whole array.  It works in three steps:

1. **Stream** the dask array block by block into a tiled, compressed GeoTIFF beside the
   target (``.<name>.<random>.tmp.tif``).  Writing a dask array straight into GDAL's COG
   driver is not possible (the driver only creates copies of complete datasets), hence
   the intermediate file.  Memory stays bounded by a few dask chunks.
2. **Convert** it with GDAL's COG driver (``rasterio.shutil.copy``): 512 px tiles,
   DEFLATE (horizontal predictor for integers, floating-point predictor for floats),
   overviews down to one tile resampled with ``MODE`` by default (never ``AVERAGE`` for
   classes), nodata, colour table, band descriptions and tags copied along.  The tile size
   is chosen so that no level is exactly as wide as its tile (validators read that as "not
   tiled"; a 856 x 512 raster gets 256 px tiles).
3. **Validate** the COG with ``rio_cogeo.cogeo.cog_validate`` and rename it onto the target
   in one step (:mod:`s2mask._atomic`); class names (``categories=``) go to GDAL's side file
   ``<target>.aux.xml`` (category names and a raster attribute table), published just before.

What a mask looks like (classes, names, colours, nodata) is :mod:`s2mask.mask`'s to say
(:func:`s2mask.mask.mask_write_options`); this module writes what it is given.

Blocks.  The writer takes blocks and writes them; how the graph is computed is the
``compute=`` argument's to decide (:data:`Compute`: ``compute(arr, write, scheduler=...)``
calls ``write(slices, block)`` once per block, one call at a time, in this process).  The
default, :func:`compute_each_block`, computes each block on its own with the given
scheduler; ``s2mask run`` and ``s2mask composite`` pass the engine's
``compute_blocks`` (``engine/compute.py``: model predictions strip by strip, one graph on
a ``dask.distributed`` cluster with each result written here as it arrives).  Only this
process ever touches the file, so no inter-process lock is needed.

Failures.  The target is checked before anything is computed (exists without
``overwrite`` -> :class:`OutputExistsError`; folder missing or not writable ->
:class:`OutputError`).  A failure while writing (disk full, GDAL error, invalid COG)
becomes :class:`OutputError`; an exception raised while computing a block propagates
unchanged.  Either way the temporary files are removed and an earlier output stays
untouched.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import rasterio
import rasterio.errors
import rasterio.shutil
import xarray as xr
from rasterio.windows import Window

from s2mask import __version__
from s2mask._atomic import (
    atomic_output,
    atomic_write_text,
    check_target,
    describe_os_error,
    remove_temps,
    temp_path_for,
)
from s2mask.errors import InvalidParameterError, OutputError, S2MaskError
from s2mask.mask import CLASSES, NODATA, mask_tags, mask_write_options
from s2mask.mask import colormap as mask_colormap
from s2mask.progress import Progress, progress_bar

__all__ = [
    "Compute",
    "MASK_CLASSES",
    "MASK_NODATA",
    "mask_colormap",
    "mask_tags",
    "compute_each_block",
    "probabilities_to_uint8",
    "write_cog",
    "write_cogs",
    "write_mask",
    "write_probabilities",
]

MASK_CLASSES: Mapping[int, str] = CLASSES
"""Mask values and their class names (owned by :mod:`s2mask.mask`)."""

MASK_NODATA = NODATA
"""The nodata value of masks and of uint8 probabilities (owned by :mod:`s2mask.mask`)."""

_RESAMPLING = {
    "nearest": "NEAREST",
    "mode": "MODE",
    "average": "AVERAGE",
    "bilinear": "BILINEAR",
    "cubic": "CUBIC",
    "cubicspline": "CUBICSPLINE",
    "lanczos": "LANCZOS",
    "rms": "RMS",
    "gauss": "GAUSS",
}


def probabilities_to_uint8(probs: xr.DataArray, *, nodata: int = MASK_NODATA) -> xr.DataArray:
    """Probabilities in [0, 1] (NaN = no data) as uint8 percent 0..100, ``nodata`` where NaN.

    Lazy: dask-backed in, dask-backed out.  Coordinates, CRS and transform are kept and the
    nodata value is recorded (``rio.write_nodata``) so :func:`write_cog` picks it up.
    """
    if not 100 < nodata <= 255:
        raise InvalidParameterError(
            f"nodata={nodata} for uint8 probabilities; expected a value in 101..255 so it cannot "
            "be mistaken for a percentage. Use the default 255."
        )
    scaled = (probs.clip(0.0, 1.0) * 100.0).round()
    out = scaled.fillna(nodata).astype(np.uint8)
    out.attrs = {k: v for k, v in probs.attrs.items() if k not in ("_FillValue", "nodata")}
    out.encoding = {}
    if probs.rio.crs is not None:
        out = out.rio.write_crs(probs.rio.crs)
    return out.rio.write_nodata(nodata, encoded=False)


# --------------------------------------------------------------------------- argument checks


def _as_3d(data: xr.DataArray) -> xr.DataArray:
    """Transpose to (leading, y, x); a 2-D array gets a leading ``band`` dimension of size 1."""
    if not isinstance(data, xr.DataArray):
        raise InvalidParameterError(
            f"write_cog() got a {type(data).__name__}; expected an xarray.DataArray with dims "
            '("band", "y", "x"), ("class", "y", "x") or ("y", "x") and a CRS (rioxarray).'
        )
    try:
        ydim, xdim = data.rio.y_dim, data.rio.x_dim
    except Exception as exc:  # rioxarray raises its own MissingSpatialDimensionError
        raise InvalidParameterError(
            f"write_cog() got dims {data.dims}; expected spatial dims named y/x (or latitude/longitude). "
            "Rename them (data.rename(...)) before writing."
        ) from exc
    if data.ndim == 2:
        return data.transpose(ydim, xdim).expand_dims("band")
    if data.ndim != 3:
        raise InvalidParameterError(
            f"write_cog() got a {data.ndim}-D array with dims {data.dims}; expected 2-D (y, x) or 3-D "
            "(band, y, x). Select one time step (isel(time=0)) or stack bands first."
        )
    lead = next(d for d in data.dims if d not in (ydim, xdim))
    return data.transpose(lead, ydim, xdim)


def _out_dtype(data: xr.DataArray, dtype: Any) -> np.dtype:
    dt = np.dtype(dtype) if dtype is not None else data.dtype
    if dt == np.bool_:
        return np.dtype(np.uint8)
    if dt == np.float16:
        return np.dtype(np.float32)
    if dt.kind not in "uif":
        raise InvalidParameterError(
            f"Cannot write dtype {dt} to a GeoTIFF; expected an integer or float dtype. Pass dtype=..."
        )
    return dt


def _nodata_fits(nodata: float, dt: np.dtype) -> bool:
    if dt.kind == "f":
        return True
    if isinstance(nodata, float) and not float(nodata).is_integer():
        return False
    info = np.iinfo(dt)
    return info.min <= nodata <= info.max


def _check_options(
    *,
    data: xr.DataArray,
    dt: np.dtype,
    nodata: float | None,
    colormap: Mapping[int, Sequence[int]] | None,
    band_descriptions: Sequence[str] | None,
    overview_resampling: str,
    blocksize: int,
    compress: str,
) -> None:
    if overview_resampling.lower() not in _RESAMPLING:
        raise InvalidParameterError(
            f"overview_resampling={overview_resampling!r}; expected one of {', '.join(_RESAMPLING)} "
            "(use 'mode' for classes, 'average' for continuous values)."
        )
    if blocksize < 16 or blocksize % 16:
        raise InvalidParameterError(
            f"blocksize={blocksize}; expected a multiple of 16 (GeoTIFF tiles), e.g. 256 or 512."
        )
    if not compress or not str(compress).isidentifier():
        raise InvalidParameterError(f"compress={compress!r}; expected a GDAL codec name such as DEFLATE.")
    nan = isinstance(nodata, float) and math.isnan(nodata)
    if nodata is not None and not nan and not _nodata_fits(nodata, dt):
        raise InvalidParameterError(
            f"nodata={nodata} does not fit the output dtype {dt}; expected a value of that type. "
            "Pass another nodata or dtype=..."
        )
    count = data.shape[0]
    if colormap is not None and (count != 1 or dt not in (np.uint8, np.uint16)):
        raise InvalidParameterError(
            f"A colour table needs a single-band uint8 or uint16 raster; got {count} band(s) of {dt}. "
            "Drop colormap= or write one band."
        )
    if band_descriptions is not None and len(band_descriptions) != count:
        raise InvalidParameterError(
            f"{len(band_descriptions)} band description(s) for {count} band(s); expected one per band."
        )


def _default_descriptions(data: xr.DataArray) -> list[str] | None:
    lead = data.dims[0]
    if lead in data.coords and data.coords[lead].dtype.kind in "UO":
        return [str(v) for v in data.coords[lead].values]
    return None


def _prepare(data: xr.DataArray, dt: np.dtype, nodata: float | None) -> da.Array:
    """The dask array to write: cast to ``dt`` (NaN -> nodata for float -> int), band axis in one chunk."""
    arr = data.data
    if not isinstance(arr, da.Array):
        arr = da.from_array(np.asarray(arr), chunks=(-1, 2048, 2048))
    if arr.dtype.kind == "f" and dt.kind in "iu" and nodata is not None:
        arr = da.where(da.isnan(arr), nodata, arr)
    if arr.dtype != dt:
        arr = arr.astype(dt)
    if len(arr.chunks[0]) > 1:
        arr = arr.rechunk({0: -1})
    return arr


# --------------------------------------------------------------------------- block writing

Slices = tuple[slice, ...]
Write = Callable[[Slices, np.ndarray], None]
Compute = Callable[..., None]
"""``compute(arr, write, *, scheduler)``: compute every block of the dask array ``arr`` and call
``write(slices, block)`` once per block, one call at a time, in this process (the protocol of
the engine's ``compute_blocks``)."""


def compute_each_block(arr: da.Array, write: Write, *, scheduler: Any = None) -> None:
    """The writer's own way to get blocks: each block computed on its own, row by row.

    Memory is one block, but what blocks share (a model's window halo) is computed once per
    block.  For model predictions pass the engine's ``compute_blocks`` (``engine/compute.py``).
    """
    starts = [np.cumsum((0, *c)) for c in arr.chunks]
    for idx in np.ndindex(*arr.numblocks):
        (block,) = dask.compute(arr.blocks[idx], scheduler=scheduler)
        write(tuple(slice(int(s[i]), int(s[i + 1])) for s, i in zip(starts, idx, strict=True)), block)


def _write_window(dst: Any, block: np.ndarray, window: Window) -> None:
    """Write one (bands, rows, cols) block into ``dst`` (a seam for tests)."""
    dst.write(block, window=window)


def _block_writer(dst: Any, path: Path, tick: Callable[[], None]) -> Write:
    """``write(slices, block)`` into the open rasterio dataset ``dst``; a failure becomes :class:`OutputError`."""
    dtype = np.dtype(dst.dtypes[0])

    def write(slices: Slices, block: np.ndarray) -> None:
        _, ys, xs = slices
        window = Window.from_slices(ys, xs, height=dst.height, width=dst.width)
        try:
            _write_window(dst, np.asarray(block, dtype=dtype), window)
        except S2MaskError:
            raise
        except Exception as exc:  # OSError, RasterioIOError, CPLE_* ...
            raise OutputError(describe_os_error(exc, path)) from exc
        tick()

    return write


def _fan_out(writers: list[Write], edges: list[int]) -> Write:
    """``write(slices, block)`` that hands ``writers[i]`` the bands ``edges[i]:edges[i + 1]`` of each block."""

    def write(slices: Slices, block: np.ndarray) -> None:
        _, ys, xs = slices
        for writer, a, b in zip(writers, edges[:-1], edges[1:], strict=True):
            writer((slice(0, b - a), ys, xs), block[a:b])

    return write


# --------------------------------------------------------------------------- the writer


def _profile(data: xr.DataArray, dt: np.dtype, nodata: float | None, blocksize: int) -> dict[str, Any]:
    count, height, width = data.shape
    crs = data.rio.crs
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "count": count,
        "height": height,
        "width": width,
        "dtype": dt.name,
        "transform": data.rio.transform(recalc=False),
        "tiled": True,
        "blockxsize": blocksize,
        "blockysize": blocksize,
        "compress": "DEFLATE",
        "zlevel": 1,
        "interleave": "pixel" if count <= 4 else "band",
        "bigtiff": "IF_SAFER",
    }
    if crs is not None:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    return profile


def _tile_size(height: int, width: int, blocksize: int) -> int:
    """``blocksize``, or the nearest power-of-two multiple of it that COG validators accept.

    rio-cogeo reads a tile exactly as wide as the image, or as one of its overviews, as
    "not tiled" and refuses it when that level is larger than 512 px (a 856 x 512 mask
    with 512 px tiles).  Overview ``k`` is ``ceil(size / 2**k)`` px, so a tile size equal
    to none of those widths is valid whatever the overviews GDAL builds.
    """

    def fits(tile: int) -> bool:
        for k in range(max(height, width).bit_length() + 1):
            w, h = -(-width // 2**k), -(-height // 2**k)
            if tile in (w, width // 2**k) and max(w, h) > 512:
                return False
        return True

    candidates = [blocksize]
    for step in range(1, 6):
        candidates += [blocksize // 2**step, blocksize * 2**step]
    return next((t for t in candidates if t >= 16 and t % 16 == 0 and fits(t)), blocksize)


def _cog_options(dt: np.dtype, *, blocksize: int, compress: str, resampling: str, width: int) -> dict:
    """GDAL COG creation options; no overviews for a 1 px wide raster (they would not be smaller)."""
    options = {
        "BLOCKSIZE": blocksize,
        "COMPRESS": compress.upper(),
        "OVERVIEW_RESAMPLING": _RESAMPLING[resampling.lower()],
        "OVERVIEWS": "AUTO" if width > 1 else "NONE",
        "BIGTIFF": "IF_SAFER",
        "NUM_THREADS": "ALL_CPUS",
    }
    if compress.upper() in ("DEFLATE", "LZW", "ZSTD", "LZMA"):
        options["PREDICTOR"] = "2" if dt.kind in "iu" else "3"
    return options


def _validate_cog(path: Path, target: Path) -> None:
    from rio_cogeo.cogeo import cog_validate

    valid, errors, _warnings = cog_validate(str(path), quiet=True)
    if not valid:
        raise OutputError(
            f"The Cloud-Optimized GeoTIFF written for {target} is not valid ({'; '.join(errors)}); "
            "expected a valid COG. Nothing was written; this is a bug in s2mask, please report it."
        )


_GFT_INTEGER, _GFT_STRING = 0, 2
_GFU_GENERIC, _GFU_NAME, _GFU_MINMAX, _GFU_RED, _GFU_GREEN, _GFU_BLUE, _GFU_ALPHA = 0, 2, 5, 6, 7, 8, 9


def _pam_xml(categories: Mapping[int, str], colormap: Mapping[int, Sequence[int]] | None) -> str:
    """GDAL PAM XML (``.aux.xml``) for band 1: category names and a thematic attribute table."""
    from xml.sax.saxutils import escape

    values = sorted(int(v) for v in categories)
    names = [escape(str(categories.get(v, ""))) for v in range(values[-1] + 1)]
    fields = [("VALUE", _GFT_INTEGER, _GFU_MINMAX), ("CLASS", _GFT_STRING, _GFU_NAME)]
    if colormap is not None:
        fields += [
            (c, _GFT_INTEGER, u)
            for c, u in zip("RGBA", (_GFU_RED, _GFU_GREEN, _GFU_BLUE, _GFU_ALPHA), strict=True)
        ]
    lines = ["<PAMDataset>", '  <PAMRasterBand band="1">', "    <CategoryNames>"]
    lines += [f"      <Category>{n}</Category>" for n in names]
    lines += ["    </CategoryNames>", '    <GDALRasterAttributeTable tableType="thematic">']
    for i, (name, kind, usage) in enumerate(fields):
        lines.append(
            f'      <FieldDefn index="{i}"><Name>{name}</Name><Type>{kind}</Type><Usage>{usage}</Usage></FieldDefn>'
        )
    for row, v in enumerate(values):
        cells = [str(v), escape(str(categories[v]))]
        if colormap is not None:
            rgba = tuple(colormap.get(v, (0, 0, 0, 255)))
            cells += [str(int(c)) for c in (*rgba, 255)[:4]]
        lines.append(f'      <Row index="{row}">' + "".join(f"<F>{c}</F>" for c in cells) + "</Row>")
    lines += ["    </GDALRasterAttributeTable>", "  </PAMRasterBand>", "</PAMDataset>", ""]
    return "\n".join(lines)


def write_cog(
    data: xr.DataArray,
    path: str | os.PathLike[str],
    *,
    nodata: float | None = None,
    dtype: Any = None,
    colormap: Mapping[int, Sequence[int]] | None = None,
    band_descriptions: Sequence[str] | None = None,
    tags: Mapping[str, Any] | None = None,
    categories: Mapping[int, str] | None = None,
    scales: Sequence[float] | None = None,
    offsets: Sequence[float] | None = None,
    overview_resampling: str = "mode",
    blocksize: int = 512,
    compress: str = "DEFLATE",
    overwrite: bool = False,
    progress: bool | Progress | None = None,
    compute: Compute = compute_each_block,
    scheduler: Any = None,
) -> Path:
    """Write a lazy raster to ``path`` as a validated Cloud-Optimized GeoTIFF; return the path.

    Args:
        data: ``xr.DataArray`` with dims ``("band"|"class"|..., "y", "x")`` or ``("y", "x")``,
            dask-backed (numpy works too), CRS and transform via rioxarray.
        path: the output file; written atomically (temporary file beside it, then renamed).
        nodata: nodata value; default ``data.rio.nodata``.  For float input and an integer
            ``dtype``, NaN becomes ``nodata``.
        dtype: output dtype; default the input's (bool -> uint8).
        colormap: ``{value: (r, g, b[, a])}`` for single-band uint8/uint16 rasters.
        band_descriptions: one description per band; default the leading coordinate's labels.
        tags: dataset metadata (``{"CLASS_0": "clear", ...}``).
        categories: ``{value: name}`` of a single-band class raster: written as GDAL category
            names and a raster attribute table (value, class, colour) in ``<path>.aux.xml``,
            where GDAL, ``gdalinfo`` and QGIS read them; published just before the COG.
        scales, offsets: one per band: physical value = stored * scale + offset, in the band
            metadata that GDAL, QGIS and rasterio (``scales``/``offsets``) read; default none.
        overview_resampling: ``"mode"`` (default, safe for classes), ``"average"`` for
            continuous values, or another GDAL method.
        blocksize: internal tile size in pixels (multiple of 16).
        compress: GDAL codec, ``DEFLATE`` by default (with a predictor).
        overwrite: replace an existing ``path``; otherwise it is refused before any work.
        progress: ``True`` draws a bar of the written blocks, an object with
            ``update(n)`` is ticked once per block, ``None``/``False`` stays silent.
        compute: how the blocks are computed: ``compute(arr, write, scheduler=...)`` calls
            ``write(slices, block)`` once per block (:data:`Compute`).  Default
            :func:`compute_each_block`; model predictions want
            the engine's ``compute_blocks`` (``engine/compute.py``: strip streaming, one graph on a cluster).
        scheduler: dask scheduler handed to ``compute`` (``"threads"``, ``"sync"``,
            ``"processes"`` or a ``distributed.Client``); default the active one.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is false (checked first).
        OutputError: the folder is missing or not writable (checked first), the disk is full,
            GDAL failed or the result is not a valid COG.  No temporary file is left behind
            and an earlier output at ``path`` is untouched.
        InvalidParameterError: inconsistent arguments (checked before any computation).
    """
    job = _job(
        data,
        path,
        nodata=nodata,
        dtype=dtype,
        colormap=colormap,
        band_descriptions=band_descriptions,
        tags=tags,
        categories=categories,
        scales=scales,
        offsets=offsets,
        overview_resampling=overview_resampling,
        blocksize=blocksize,
        compress=compress,
        overwrite=overwrite,
    )
    return _write_jobs([job], progress=progress, compute=compute, scheduler=scheduler)[0]


_JOB_OPTIONS = frozenset(
    {
        "nodata",
        "dtype",
        "colormap",
        "band_descriptions",
        "tags",
        "categories",
        "scales",
        "offsets",
        "overview_resampling",
        "blocksize",
        "compress",
        "overwrite",
    }
)


def write_cogs(
    items: Sequence[tuple[xr.DataArray, str | os.PathLike[str], Mapping[str, Any]]],
    *,
    progress: bool | Progress | None = None,
    compute: Compute = compute_each_block,
    scheduler: Any = None,
) -> list[Path]:
    """Write several lazy rasters computed from one graph in a single pass; return their paths.

    ``items`` are ``(data, path, options)`` with the keyword options of :func:`write_cog`
    (``nodata``, ``dtype``, ``colormap``, ...); ``compute`` and ``scheduler`` as there.  Rasters
    of one dtype and one block grid (a mask and its probabilities) are handed to ``compute`` as
    one array, so the shared part of their graphs (the model) runs once, not once per file.  Every target
    is checked before any work; each file is staged, converted, validated and renamed into
    place as :func:`write_cog` does, and if any one fails none is published.
    """
    jobs = []
    for data, path, options in items:
        unknown = set(options) - _JOB_OPTIONS
        if unknown:
            raise InvalidParameterError(
                f"write_cogs() got unknown option(s) {', '.join(sorted(unknown))} for {path}; expected "
                f"any of {', '.join(sorted(_JOB_OPTIONS))}."
            )
        jobs.append(_job(data, path, **options))
    targets = [j.target for j in jobs]
    if len(set(targets)) != len(targets):
        raise InvalidParameterError(
            f"write_cogs() got the same output twice in {targets}; expected distinct paths."
        )
    return _write_jobs(jobs, progress=progress, compute=compute, scheduler=scheduler)


@dataclass
class _Job:
    """One raster to write: the checked target, the dask array and everything GDAL needs."""

    target: Path
    arr: da.Array
    profile: dict[str, Any]
    colormap: Mapping[int, Sequence[int]] | None
    descriptions: Sequence[str] | None
    tags: Mapping[str, Any] | None
    cog_options: dict[str, Any]
    overwrite: bool
    aux_xml: str | None = None
    """GDAL PAM metadata (category names, attribute table) for ``<target>.aux.xml``."""
    scales: Sequence[float] | None = None
    offsets: Sequence[float] | None = None

    @property
    def aux_target(self) -> Path:
        return Path(f"{self.target}.aux.xml")


def _job(
    data: xr.DataArray,
    path: str | os.PathLike[str],
    *,
    nodata: float | None = None,
    dtype: Any = None,
    colormap: Mapping[int, Sequence[int]] | None = None,
    band_descriptions: Sequence[str] | None = None,
    tags: Mapping[str, Any] | None = None,
    categories: Mapping[int, str] | None = None,
    scales: Sequence[float] | None = None,
    offsets: Sequence[float] | None = None,
    overview_resampling: str = "mode",
    blocksize: int = 512,
    compress: str = "DEFLATE",
    overwrite: bool = False,
) -> _Job:
    """Check the target and the options (before any computation) and prepare the array."""
    target = check_target(path, overwrite=overwrite)
    if categories is not None:
        check_target(f"{target}.aux.xml", overwrite=overwrite)
    data3 = _as_3d(data)
    dt = _out_dtype(data3, dtype)
    if nodata is None:
        nodata = data3.rio.nodata if data3.rio.nodata is not None else data3.rio.encoded_nodata
        if nodata is not None and not _nodata_fits(nodata, dt):
            nodata = None
    _check_options(
        data=data3,
        dt=dt,
        nodata=nodata,
        colormap=colormap,
        band_descriptions=band_descriptions,
        overview_resampling=overview_resampling,
        blocksize=blocksize,
        compress=compress,
    )
    descriptions = list(band_descriptions) if band_descriptions is not None else _default_descriptions(data3)
    for name, values in (("scales", scales), ("offsets", offsets)):
        if values is not None and len(values) != data3.shape[0]:
            raise InvalidParameterError(f"{len(values)} {name} for {data3.shape[0]} band(s); expected one per band.")
    arr = _prepare(data3, dt, nodata)
    blocksize = _tile_size(arr.shape[1], arr.shape[2], blocksize)
    return _Job(
        target=target,
        arr=arr,
        profile=_profile(data3, dt, nodata, blocksize),
        colormap=colormap,
        descriptions=descriptions,
        tags=tags,
        cog_options=_cog_options(
            dt, blocksize=blocksize, compress=compress, resampling=overview_resampling, width=arr.shape[2]
        ),
        overwrite=overwrite,
        aux_xml=None if categories is None else _pam_xml(categories, colormap),
        scales=None if scales is None else [float(v) for v in scales],
        offsets=None if offsets is None else [float(v) for v in offsets],
    )


def _write_jobs(
    jobs: list[_Job], *, progress: bool | Progress | None, compute: Compute, scheduler: Any
) -> list[Path]:
    """Stage every job's raster, convert each to a COG, validate it, rename all into place."""
    stagings = [
        temp_path_for(j.target, ".tif") for j in jobs
    ]  # tiled intermediates, .<name>.<random>.tmp.tif
    try:
        with contextlib.ExitStack() as stack:
            tmps = [
                stack.enter_context(atomic_output(j.target, overwrite=j.overwrite, suffix=".tif"))
                for j in jobs
            ]
            _write_stagings(jobs, stagings, progress=progress, compute=compute, scheduler=scheduler)
            for job, staging, tmp in zip(jobs, stagings, tmps, strict=True):
                try:
                    rasterio.shutil.copy(staging, tmp, driver="COG", **job.cog_options)
                except rasterio.errors.RasterioError as exc:
                    raise OutputError(describe_os_error(exc, job.target)) from exc
                finally:
                    remove_temps(staging)
                _validate_cog(tmp, job.target)
            for job in jobs:  # side files first: a published COG always has its class names
                if job.aux_xml is not None:
                    atomic_write_text(job.aux_target, job.aux_xml, overwrite=job.overwrite)
    finally:
        for staging in stagings:
            remove_temps(staging)
    return [j.target for j in jobs]


def _open_staging(job: _Job, staging: Path, stack: contextlib.ExitStack) -> Any:
    """Create the tiled intermediate for ``job`` with all its metadata; closed by ``stack``."""
    try:
        dst = stack.enter_context(rasterio.open(staging, "w", **job.profile))
    except rasterio.errors.RasterioError as exc:
        raise OutputError(describe_os_error(exc, job.target)) from exc
    try:
        if job.colormap is not None:
            dst.write_colormap(1, {int(k): tuple(int(c) for c in v) for k, v in job.colormap.items()})
        if job.descriptions:
            for i, desc in enumerate(job.descriptions, start=1):
                dst.set_band_description(i, str(desc))
        if job.scales is not None:
            dst.scales = job.scales
        if job.offsets is not None:
            dst.offsets = job.offsets
        dst.update_tags(
            **{"TIFFTAG_SOFTWARE": f"s2mask {__version__}"},
            **{str(k): str(v) for k, v in (job.tags or {}).items()},
        )
    except rasterio.errors.RasterioError as exc:
        raise OutputError(describe_os_error(exc, job.target)) from exc
    return dst


def _stackable(jobs: list[_Job]) -> bool:
    """Whether the jobs' arrays can be computed as one array (same dtype and blocks): their shared graph runs once."""
    first = jobs[0].arr
    return len(jobs) > 1 and all(
        j.arr.dtype == first.dtype and j.arr.chunks[1:] == first.chunks[1:] for j in jobs
    )


def _write_stagings(
    jobs: list[_Job],
    stagings: list[Path],
    *,
    progress: bool | Progress | None,
    compute: Compute,
    scheduler: Any,
) -> None:
    """Write every job's blocks, as ``compute`` hands them over, into its staging file."""
    total = sum(j.arr.npartitions for j in jobs)
    with contextlib.ExitStack() as stack:
        dsts = [_open_staging(j, s, stack) for j, s in zip(jobs, stagings, strict=True)]
        if isinstance(progress, bool) or progress is None:
            bar = stack.enter_context(progress_bar(total, desc=jobs[0].target.name, enabled=bool(progress)))
        else:
            bar = progress
            if getattr(progress, "total", 0) is None and hasattr(progress, "reset"):
                progress.reset(total=total)
        writers = [_block_writer(d, j.target, lambda: bar.update(1)) for d, j in zip(dsts, jobs, strict=True)]
        if not _stackable(jobs):
            for job, write in zip(jobs, writers, strict=True):
                compute(job.arr, write, scheduler=scheduler)
            return
        # one array, bands of all jobs stacked: the graph they share runs once
        stacked = da.concatenate([j.arr for j in jobs], axis=0).rechunk({0: -1})
        edges = np.cumsum((0, *(j.arr.shape[0] for j in jobs))).tolist()
        compute(stacked, _fan_out(writers, edges), scheduler=scheduler)


def write_mask(
    mask: xr.DataArray,
    path: str | os.PathLike[str],
    *,
    classes: Mapping[int, str] = MASK_CLASSES,
    tags: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Path:
    """Write a uint8 class mask (0 clear, 1 cloud, 2 shadow, 255 nodata) as a COG.

    The encoding comes from :func:`s2mask.mask.mask_write_options`: colour table,
    ``CLASS_*`` tags, a band description listing the classes, GDAL category names and an
    attribute table (``<path>.aux.xml``), nodata 255 and ``MODE`` overviews.  Other keyword
    arguments go to :func:`write_cog` (and override those).
    """
    return write_cog(mask, path, **{**mask_write_options(classes, tags=tags), **kwargs})


def write_probabilities(
    probs: xr.DataArray,
    path: str | os.PathLike[str],
    *,
    classes: Sequence[str] | None = None,
    tags: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> Path:
    """Write class probabilities (``("class", "y", "x")`` in [0, 1], NaN nodata) as a uint8 COG.

    Values are percent 0..100 with nodata 255 (:func:`probabilities_to_uint8`), one band per
    class named ``"<class> probability (%)"``, ``AVERAGE`` overviews.
    """
    data = probs if probs.dtype == np.uint8 else probabilities_to_uint8(probs)
    data3 = _as_3d(data)
    if classes is None:
        classes = _default_descriptions(data3) or [
            MASK_CLASSES.get(i, f"class {i}") for i in range(data3.shape[0])
        ]
    kwargs.setdefault("band_descriptions", [f"{c} probability (%)" for c in classes])
    kwargs.setdefault("overview_resampling", "average")
    return write_cog(
        data,
        path,
        nodata=MASK_NODATA,
        dtype=np.uint8,
        tags={"UNITS": "percent", "SCALE": "0.01", **(tags or {})},
        **kwargs,
    )
