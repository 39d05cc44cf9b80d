"""The lazy reading core shared by the readers: band files -> a dask-backed reflectance cube.

A :class:`LazyReflectance` describes each band as a :class:`BandSource` (a file path,
its grid and its DN scaling) plus one target grid.  Dask calls ``reader[slices]`` once per
block; each call opens every band file with rasterio, reads only the window that block
needs, converts DN to reflectance and brings it onto the target grid.  Resampling is
anchored to global pixel indices, so a chunked read equals the whole-array read.
Everything here pickles (paths and numbers only), so graphs run on dask.distributed.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dask.array as da
import numpy as np
import rasterio
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine
from dask.base import tokenize
from rasterio.windows import Window

from s2mask.errors import CorruptDataError, InvalidParameterError

__all__ = [
    "RESAMPLING",
    "BandSource",
    "LazyReflectance",
    "check_readable",
    "normalize_chunks",
    "reader_of",
    "resample_indices",
    "to_dataarray",
]

RESAMPLING = ("nearest", "bilinear", "average")
"""How a band reaches a grid of another resolution (``average`` only matters when downsampling)."""


@dataclass(frozen=True)
class BandSource:
    """One band in one file and how its DN become reflectance: ``(DN + add) / divisor``."""

    path: str
    """GDAL path of the file (may be ``/vsizip/...``)."""
    index: int
    """1-based band index inside the file."""
    shape: tuple[int, int]
    """(rows, cols) of the file."""
    res: tuple[float, float]
    """(y, x) pixel size of the file, in grid units (metres)."""
    add: float = 0.0
    """Added to DN before dividing (the SAFE ``*_ADD_OFFSET``)."""
    divisor: float = 10000.0
    """DN divisor (the SAFE quantification value, or ``1 / scale``)."""
    nodata: float | None = 0.0
    """DN that marks missing data (becomes NaN)."""
    stat_path: str = ""
    """Local file whose size and mtime identify the file's version (the zip for ``/vsizip/``); default ``path``."""


Chunks = int | tuple[int, int] | tuple[tuple[int, ...], tuple[int, ...]]
"""``2048``, ``(1024, 2048)`` or explicit block sizes ``((rows...), (cols...))``."""


def normalize_chunks(
    chunks: Chunks | Callable[[tuple[int, int]], Chunks], shape: tuple[int, int] | None = None
) -> tuple[int | tuple[int, ...], int | tuple[int, ...]]:
    """``2048``, ``(1024, 2048)``, ``((rows...), (cols...))`` or ``f(shape)`` -> ``(y, x)`` chunks, validated.

    Explicit block sizes must add up to ``shape``; a callable gets the grid ``(rows, cols)``
    and returns any of the other forms (how :func:`s2mask.engine.predict.input_chunks`
    aligns reads with the engine's blocks and halos).
    """
    if callable(chunks):
        if shape is None:
            raise InvalidParameterError("chunks is a function of the grid shape, but no shape is known yet.")
        return normalize_chunks(chunks(tuple(shape)), shape)
    pair = (chunks, chunks) if isinstance(chunks, (int, np.integer)) else tuple(chunks)

    def _axis(c: object, length: int | None) -> int | tuple[int, ...] | None:
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            return int(c) if c > 0 else None
        if isinstance(c, (tuple, list)) and c and all(isinstance(s, (int, np.integer)) and s > 0 for s in c):
            sizes = tuple(int(s) for s in c)
            return sizes if length is None or sum(sizes) == length else None
        return None

    lengths = tuple(shape) if shape is not None else (None, None)
    axes = tuple(_axis(c, n) for c, n in zip(pair, lengths, strict=False)) if len(pair) == 2 else ()
    if len(axes) != 2 or None in axes:
        raise InvalidParameterError(
            f"chunks is {chunks!r}; expected a positive int, a (y, x) pair of positive ints (e.g. 2048), "
            f"or two tuples of block sizes adding up to the grid {shape}."
        )
    return axes[0], axes[1]


def resample_indices(
    t0: int, t1: int, ratio: float, n: int, method: str
) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Source rows (or cols) for target indices ``t0..t1-1`` along one axis.

    ``ratio`` is target pixel size / source pixel size (0.5 when a 20 m band goes to a
    10 m grid), ``n`` the source length.  Returns ``(s0, s1, idx, w)``: the source window
    ``[s0, s1)`` to read, and per target index either the nearest source index (``w``
    empty), the left neighbour and its interpolation weight (bilinear), or the start of
    each averaged segment (average); indices are relative to ``s0``.
    """
    t = np.arange(t0, t1, dtype=np.float64)
    if method == "average" and ratio > 1:
        starts = np.clip(np.floor(t * ratio + 1e-9).astype(np.int64), 0, n - 1)
        ends = np.clip(np.floor((t + 1) * ratio + 1e-9).astype(np.int64), 1, n)
        ends = np.maximum(ends, starts + 1)
        s0, s1 = int(starts[0]), int(ends[-1])
        return s0, s1, starts - s0, (ends - starts).astype(np.float32)
    if method == "bilinear":
        s = np.clip((t + 0.5) * ratio - 0.5, 0, n - 1)
        i0 = np.clip(np.floor(s).astype(np.int64), 0, max(n - 2, 0))
        w = (s - i0).astype(np.float32)
        s0, s1 = int(i0[0]), int(min(i0[-1] + 2, n))
        return s0, s1, i0 - s0, w
    idx = np.clip(np.floor((t + 0.5) * ratio + 1e-9).astype(np.int64), 0, n - 1)
    s0, s1 = int(idx[0]), int(idx[-1] + 1)
    return s0, s1, idx - s0, np.empty(0, np.float32)


def _apply(a: np.ndarray, axis: int, idx: np.ndarray, w: np.ndarray, method: str, ratio: float) -> np.ndarray:
    """Resample ``a`` along ``axis`` with what :func:`resample_indices` returned."""
    if method == "average" and ratio > 1:
        sums = np.add.reduceat(a, idx, axis=axis)
        shape = [1, 1]
        shape[axis] = -1
        return sums / w.reshape(shape)
    if method == "bilinear":
        n = a.shape[axis]
        lo = np.take(a, idx, axis=axis)
        hi = np.take(a, np.minimum(idx + 1, n - 1), axis=axis)
        shape = [1, 1]
        shape[axis] = -1
        w = w.reshape(shape)
        return np.where(w == 0, lo, lo + w * (hi - lo))
    return np.take(a, idx, axis=axis)


_HANDLES: OrderedDict[tuple, tuple[rasterio.io.DatasetReader, threading.Lock]] = OrderedDict()
_HANDLES_LOCK = threading.Lock()
_MAX_HANDLES = 64


def _stamp(src: BandSource) -> tuple[int, int] | None:
    try:
        st = os.stat(src.stat_path or src.path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _dataset(src: BandSource) -> tuple[rasterio.io.DatasetReader, threading.Lock]:
    """An open dataset for ``src`` and the lock to hold while reading it (a small process-wide LRU).

    One handle per file, shared by every thread, keeps GDAL's decoded-tile cache useful:
    a JPEG 2000 tile (1024 px) decoded for one block's halo is found again by the thread
    that reads the neighbouring block, instead of being decoded a second time through
    that thread's own handle.  Reads of one file are serialised by its lock (rasterio
    datasets are not thread-safe); different files are read in parallel.  Handles are
    keyed by the file's size and mtime, so a rewritten file is reopened.
    """
    key = (src.path, _stamp(src))
    with _HANDLES_LOCK:
        entry = _HANDLES.get(key)
        if entry is None or entry[0].closed:
            entry = _HANDLES[key] = (rasterio.open(src.path), threading.Lock())
            while len(_HANDLES) > _MAX_HANDLES:
                old, lock = _HANDLES.popitem(last=False)[1]
                with lock:
                    old.close()
        _HANDLES.move_to_end(key)
        return entry


def _forget(src: BandSource) -> None:
    with _HANDLES_LOCK:
        for key in [k for k in _HANDLES if k[0] == src.path]:
            ds, lock = _HANDLES.pop(key)
            with lock:
                ds.close()


def _read_window(src: BandSource, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """Read ``src``'s DN in the window and return float32 reflectance (nodata -> NaN, clipped to [0, 1])."""
    return _read_windows([src], rows, cols)[0]


def _read_windows(srcs: list[BandSource], rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """:func:`_read_window` for several bands of one file, read in a single call."""
    window = Window(cols[0], rows[0], cols[1] - cols[0], rows[1] - rows[0])
    try:
        ds, lock = _dataset(srcs[0])
        with lock:
            dn = ds.read([s.index for s in srcs], window=window)
    except (rasterio.errors.RasterioError, OSError) as exc:
        _forget(srcs[0])
        raise CorruptDataError(
            f"Cannot read rows {rows[0]}:{rows[1]}, cols {cols[0]}:{cols[1]} of {srcs[0].path} ({exc}); "
            "the file is truncated or corrupt. Download the product again."
        ) from exc
    return _to_reflectance(dn, srcs)


def dn_to_reflectance(
    dn: np.ndarray, add: Sequence[float], divisor: Sequence[float], nodata: Sequence[float | None]
) -> np.ndarray:
    """The one DN -> reflectance conversion of every reader (SAFE, GeoTIFF, STAC).

    DN ``(bands, y, x)`` -> float32 ``(DN + add) / divisor`` per band (``add``/``divisor`` are
    a SAFE's offset and quantification, or ``offset / scale`` and ``1 / scale``), DN equal
    to the band's ``nodata`` -> NaN, clipped to [0, 1].  One formula in float32, so the same
    DN gives the same reflectance bit for bit whatever the source.
    """
    out = dn.astype(np.float32)  # in place from here: the same float32 operations, no temporaries
    for i in range(dn.shape[0]):
        band = out[i]
        if add[i]:
            band += np.float32(add[i])
        band /= np.float32(divisor[i])
        if nodata[i] is not None and not math.isnan(nodata[i]):
            band[dn[i] == nodata[i]] = np.nan
    np.maximum(out, 0.0, out=out)  # np.clip's bounds, NaN kept, without clip's dispatch cost
    np.minimum(out, 1.0, out=out)
    return out


def _to_reflectance(dn: np.ndarray, srcs: list[BandSource]) -> np.ndarray:
    """DN ``(bands, y, x)`` of ``srcs`` -> float32 reflectance (:func:`dn_to_reflectance`)."""
    return dn_to_reflectance(dn, [s.add for s in srcs], [s.divisor for s in srcs], [s.nodata for s in srcs])


MAX_WINDOW_PIXELS = 4096 * 4096
"""Largest source window one read may decode (bounds memory when a fine band is downsampled)."""


class LazyReflectance:
    """An array-like ``(band, y, x)`` float32 reflectance cube that reads windows on demand.

    Meant for :func:`dask.array.from_array`: ``reader[b, y0:y1, x0:x1]`` reads exactly the
    windows of the band files that cover those target pixels.
    """

    dtype = np.dtype("float32")
    ndim = 3

    def __init__(
        self,
        sources: tuple[BandSource, ...],
        shape: tuple[int, int],
        res: tuple[float, float],
        method: str = "nearest",
    ) -> None:
        if method not in RESAMPLING:
            raise InvalidParameterError(f"resampling is {method!r}; expected one of {', '.join(RESAMPLING)}.")
        self.sources, self.grid_shape, self.res, self.method = (
            tuple(sources),
            tuple(shape),
            tuple(res),
            method,
        )
        self.shape = (len(self.sources), *self.grid_shape)

    def __getitem__(self, key: tuple[slice, slice, slice]) -> np.ndarray:
        bands, rows, cols = (k if isinstance(k, slice) else slice(k, k + 1) for k in key)
        r0, r1, _ = rows.indices(self.shape[1])
        c0, c1, _ = cols.indices(self.shape[2])
        chosen = self.sources[bands]
        out = np.empty((len(chosen), max(r1 - r0, 0), max(c1 - c0, 0)), np.float32)
        if not out.size:
            return out
        # bands of one file on the grid itself are read in one call: a pixel-interleaved
        # GeoTIFF then decodes each tile once, not once per band, whatever GDAL's cache size
        groups: dict[str, list[int]] = {}
        for i, src in enumerate(chosen):
            if self._on_grid(src, r1, c1):
                groups.setdefault(src.path, []).append(i)
        done: set[int] = set()
        for members in groups.values():
            if len(members) > 1:
                out[members] = _read_windows([chosen[i] for i in members], (r0, r1), (c0, c1))
                done.update(members)
        for i, src in enumerate(chosen):
            if i not in done:
                out[i] = self._band_block(src, r0, r1, c0, c1)
        return out

    def has_overviews(self, bands: Sequence[int] | None = None) -> bool:
        """Whether every band file (of ``bands``, indexes into the sources) has reduced-resolution levels."""
        for src in self._subset(bands):
            ds, lock = _dataset(src)
            with lock:
                if not ds.overviews(src.index):
                    return False
        return True

    def _subset(self, bands: Sequence[int] | None) -> tuple[BandSource, ...]:
        return self.sources if bands is None else tuple(self.sources[i] for i in bands)

    def preview(self, shape: tuple[int, int], bands: Sequence[int] | None = None) -> np.ndarray:
        """The whole grid as ``(band, *shape)`` float32 reflectance, read at reduced size.

        ``bands`` (indexes into the sources) reads only those bands, in that order.

        Each file is read once at ``shape`` with average resampling, so GDAL takes its
        overviews (a COG's reduced-resolution levels, a JPEG 2000's wavelet levels) and a
        quick-look of a full tile decodes a few MB instead of the full-resolution bands.
        Pixels whose averaged DN equals the nodata value become NaN.
        """
        from rasterio.enums import Resampling

        sources = self._subset(bands)
        out = np.empty((len(sources), int(shape[0]), int(shape[1])), np.float32)
        groups: dict[str, list[int]] = {}
        for i, src in enumerate(sources):
            groups.setdefault(src.path, []).append(i)
        for members in groups.values():
            first = sources[members[0]]
            ds, lock = _dataset(first)
            try:
                with lock:
                    dn = ds.read(
                        [sources[i].index for i in members],
                        out_shape=(len(members), int(shape[0]), int(shape[1])),
                        resampling=Resampling.average,
                    )
            except (rasterio.errors.RasterioError, OSError) as exc:
                _forget(first)
                raise CorruptDataError(
                    f"Cannot read a preview of {first.path} ({exc}); the file is truncated or corrupt. "
                    "Download the product again."
                ) from exc
            out[members] = _to_reflectance(dn, [sources[i] for i in members])
        return out

    def _on_grid(self, src: BandSource, r1: int, c1: int) -> bool:
        ry, rx = self.res[0] / src.res[0], self.res[1] / src.res[1]
        return math.isclose(ry, 1.0) and math.isclose(rx, 1.0) and r1 <= src.shape[0] and c1 <= src.shape[1]

    def _band_block(self, src: BandSource, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        ry, rx = self.res[0] / src.res[0], self.res[1] / src.res[1]
        if self._on_grid(src, r1, c1):
            return _read_window(src, (r0, r1), (c0, c1))
        ys0, ys1, yi, yw = resample_indices(r0, r1, ry, src.shape[0], self.method)
        xs0, xs1, xi, xw = resample_indices(c0, c1, rx, src.shape[1], self.method)
        if (ys1 - ys0) * (xs1 - xs0) > MAX_WINDOW_PIXELS and r1 - r0 > 1:
            # downsampling reads more source than it returns: go in row strips (same pixels)
            mid = (r0 + r1) // 2
            return np.concatenate(
                [self._band_block(src, r0, mid, c0, c1), self._band_block(src, mid, r1, c0, c1)]
            )
        block = _read_window(src, (ys0, ys1), (xs0, xs1))
        block = _apply(block, 0, yi, yw, self.method, ry)
        return _apply(block, 1, xi, xw, self.method, rx).astype(np.float32, copy=False)


def reader_of(cube: xr.DataArray) -> LazyReflectance | None:
    """The :class:`LazyReflectance` behind ``cube`` when ``cube`` is exactly what a reader returned.

    ``None`` for any cube that was computed on since (selected, scaled, ...): its values
    may then differ from the files.
    """
    data = getattr(cube, "data", None)
    if not isinstance(data, da.Array):
        return None
    layers = data.__dask_graph__().layers
    if len(layers) != 2 or not data.name.startswith("s2mask-read-"):
        return None
    original = layers.get("original-" + data.name)
    values = list(dict(original).values()) if original is not None else []
    return values[0] if len(values) == 1 and isinstance(values[0], LazyReflectance) else None


def check_readable(path: str, *, probe: bool = True) -> tuple[tuple[int, int], tuple[float, float], int, str]:
    """Open ``path`` with rasterio; return ``((rows, cols), (yres, xres), count, dtype)``.

    With ``probe`` the last pixel is decoded too, which catches truncated JPEG 2000
    files (their header is at the start, the last tile at the end) at open time.
    """
    try:
        with rasterio.open(path) as ds:
            shape, count, dtype = (ds.height, ds.width), ds.count, ds.dtypes[0]
            res = (abs(ds.transform.e), abs(ds.transform.a))
            if probe:
                ds.read(1, window=Window(ds.width - 1, ds.height - 1, 1, 1))
    except (rasterio.errors.RasterioError, OSError) as exc:
        raise CorruptDataError(
            f"Cannot decode {path} ({exc}); expected a readable raster. The file is empty, truncated or "
            "corrupt; download the product again."
        ) from exc
    return shape, res, count, dtype


def to_dataarray(
    reader: LazyReflectance,
    *,
    band_names: tuple[str, ...],
    transform: Affine,
    crs: str,
    chunks: Chunks | Callable[[tuple[int, int]], Chunks],
    attrs: dict[str, object],
    token: object,
) -> xr.DataArray:
    """Wrap ``reader`` as the reader contract: lazy ``(band, y, x)`` with coords, CRS and transform."""
    cy, cx = normalize_chunks(chunks, reader.grid_shape)
    name = "s2mask-read-" + tokenize(
        token, reader.sources, reader.grid_shape, reader.res, reader.method, cy, cx
    )
    data = da.from_array(
        reader,
        chunks=(reader.shape[0], cy, cx),
        name=name,
        asarray=False,
        fancy=False,
        meta=np.empty((0, 0, 0), np.float32),
    )
    rows, cols = reader.grid_shape
    x = transform.c + (np.arange(cols) + 0.5) * transform.a
    y = transform.f + (np.arange(rows) + 0.5) * transform.e
    arr = xr.DataArray(
        data,
        dims=("band", "y", "x"),
        coords={"band": list(band_names), "y": y, "x": x},
        attrs=dict(attrs),
        name="reflectance",
    )
    arr = arr.rio.write_crs(crs)
    return arr.rio.write_transform(transform)
