"""Windowed inference: a numpy core and a thin dask shell.

The numpy core (:func:`predict_array`) cuts a region of the image into the windows
of the full-image grid (:class:`~s2mask.engine.windows.WindowGrid`), skips windows
with no valid pixel, sends the rest to the model in batches and blends the
predictions (:mod:`s2mask.engine.blend`).

The dask shell (:func:`predict`) runs in two lazy stages over output blocks:

1. *windows*: each block runs the windows whose top-left corner lies in it (so
   every window runs exactly once, whatever the chunking) on its input plus a
   one-sided halo of ``window - 1`` px below and to the right, and keeps the
   weighted sums; these are cut at once into *pieces*, one per output block they
   reach (the block itself and its right, lower and lower-right neighbours), so
   only the thin halo pieces wait for the neighbours;
2. *blend*: each output block adds up the pieces that reach into it and divides by
   the summed weight.

Memory is bounded by the block size plus one window; nothing is ever the size of
the scene.  :mod:`s2mask.engine.stream` runs the graph strip by strip so that the
blocks held at once do not grow with the scene either.  Reading and inference
overlap: reads are separate dask tasks that run in the scheduler's other threads
while one thread runs the model; with
``overlap_io=True`` (the default) model calls in a process are serialised by a
lock, so torch's own thread pool (or the GPU) is not oversubscribed by several
dask threads at once while the others keep reading and decoding.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import dask.array as da
import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from dask.highlevelgraph import HighLevelGraph

from s2mask.engine.blend import Accumulator, combine, window_weight
from s2mask.engine.windows import WindowGrid, resolve_window
from s2mask.errors import BandMismatchError, InvalidParameterError, WeightsError

__all__ = [
    "MODEL_STAGE",
    "Model",
    "predict",
    "predict_array",
    "select_bands",
    "count_windows",
    "class_names",
    "input_chunks",
]

MODEL_STAGE = "s2mask-windows-"
"""Key prefix of the graph's model tasks (stage 1); :mod:`s2mask.engine.stream` keeps their results."""

Progress = Callable[[int], Any]
"""Called with the number of windows just finished (run or skipped)."""

_INFERENCE_LOCK = threading.Lock()

DEFAULT_BLOCK = 2048
"""Output block side (px) when the cube is not dask-backed."""


class Model(Protocol):
    """What the engine needs from a model (see :class:`s2mask.model.LoadedModel`)."""

    bands: tuple[str, ...]
    num_classes: int

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        """``(N, C, H, W)`` float32 reflectance (NaN allowed) -> ``(N, K, H, W)`` probabilities."""
        ...


def _card_window(model: Model) -> int | None:
    return getattr(getattr(model, "card", None), "window_size", None)


def class_names(model: Model) -> tuple[str, ...] | tuple[int, ...]:
    """The model card's class names, or ``0 .. K-1`` when the model has no card."""
    names = tuple(getattr(getattr(model, "card", None), "classes", ()) or ())
    return names if len(names) == model.num_classes else tuple(range(model.num_classes))


def select_bands(cube: xr.DataArray, model: Model) -> xr.DataArray:
    """The model's bands from ``cube`` in the model's order; :class:`BandMismatchError` if any is missing."""
    if tuple(cube.dims) != ("band", "y", "x"):
        raise InvalidParameterError(
            f"The cube has dims {tuple(cube.dims)}; expected ('band', 'y', 'x'). "
            "Select one time step or transpose the cube first."
        )
    have = [str(b) for b in cube["band"].values] if "band" in cube.coords else []
    missing = [b for b in model.bands if b not in have]
    if missing:
        raise BandMismatchError(
            f"The cube has bands {', '.join(have) or 'none'} but the model card wants "
            f"{', '.join(model.bands)} (missing {', '.join(missing)}). Read the product with "
            "these bands, or use a model trained on the bands you have."
        )
    return cube.sel(band=list(model.bands))


def count_windows(
    cube: xr.DataArray, model: Model, *, window: int | None = None, overlap: int | None = None
) -> int:
    """How many windows :func:`predict` will report to ``progress`` for ``cube``."""
    win, ovl = resolve_window(window, overlap, default_window=_card_window(model))
    return len(WindowGrid(cube.sizes["y"], cube.sizes["x"], win, ovl))


# --------------------------------------------------------------------------- numpy core


def _pad_region(region: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pad ``region`` (C, h, w) at the bottom/right by reflection up to ``shape``."""
    py, px = shape[0] - region.shape[1], shape[1] - region.shape[2]
    if py <= 0 and px <= 0:
        return region
    widths = ((0, 0), (0, max(py, 0)), (0, max(px, 0)))
    mode = "reflect" if min(region.shape[1:]) > 1 else "symmetric"
    return np.pad(region, widths, mode=mode)


def _run_windows(
    region: np.ndarray,
    acc: Accumulator,
    starts: list[tuple[int, int]],
    model: Model,
    *,
    window: int,
    overlap: int,
    batch_size: int,
    overlap_io: bool,
    progress: Progress | None,
) -> int:
    """Run ``starts`` (global) on ``region`` (aligned with ``acc``) into ``acc``; return model calls."""
    y0, x0 = acc.origin
    valid = ~np.isnan(region).all(axis=0)
    keep = [(y, x) for y, x in starts if valid[y - y0 : y - y0 + window, x - x0 : x - x0 + window].any()]
    if progress is not None and len(keep) < len(starts):
        progress(len(starts) - len(keep))
    weight = window_weight(window, overlap)
    calls = 0
    for i in range(0, len(keep), batch_size):
        chunk = keep[i : i + batch_size]
        batch = np.empty((len(chunk), region.shape[0], window, window), dtype=np.float32)
        for k, (y, x) in enumerate(chunk):
            batch[k] = region[:, y - y0 : y - y0 + window, x - x0 : x - x0 + window]
        if overlap_io:
            with _INFERENCE_LOCK:
                probs = model.predict_proba(batch)
        else:
            probs = model.predict_proba(batch)
        calls += 1
        probs = np.asarray(probs, dtype=np.float32)
        expected = (len(chunk), model.num_classes, window, window)
        if probs.shape != expected:
            raise WeightsError(
                f"The model returned probabilities of shape {probs.shape} for a batch of shape "
                f"{batch.shape}; expected {expected}. Check the model's num_classes and its output."
            )
        acc.add(probs, chunk, weight)
        if progress is not None:
            progress(len(chunk))
    return calls


def _window_sums(
    region: np.ndarray,
    origin: tuple[int, int],
    starts: list[tuple[int, int]],
    grid: WindowGrid,
    model: Model,
    **kw: Any,
) -> Accumulator:
    """Weighted sums of the windows ``starts`` over ``region`` (full-image coords at ``origin``).

    ``region`` must hold every real pixel of those windows; axes shorter than a
    window are padded by reflection.  The result is cropped to the real image.
    """
    region = np.asarray(region, dtype=np.float32)
    y0, x0 = origin
    ext = grid.extent(starts)
    y1 = max(y0 + region.shape[1], ext[1] if ext else 0)
    x1 = max(x0 + region.shape[2], ext[3] if ext else 0)
    region = _pad_region(region, (y1 - y0, x1 - x0))
    acc = Accumulator.zeros(origin, (y1 - y0, x1 - x0), model.num_classes)
    _run_windows(region, acc, starts, model, window=grid.window, overlap=grid.overlap, **kw)
    return acc.crop(grid.height, grid.width)


def predict_array(
    array: np.ndarray,
    model: Model,
    *,
    window: int | None = None,
    overlap: int | None = None,
    batch_size: int = 8,
    origin: tuple[int, int] = (0, 0),
    full_shape: tuple[int, int] | None = None,
    region: tuple[int, int, int, int] | None = None,
    overlap_io: bool = True,
    progress: Progress | None = None,
) -> np.ndarray:
    """Class probabilities ``(K, h, w)`` float32 for a region of an image, in memory.

    Args:
        array: reflectance ``(C, H, W)`` in the model's band order, NaN = nodata; it
            covers full-image rows/columns starting at ``origin``.
        model: any object following :class:`Model`.
        window, overlap: window side and overlap (defaults: card window or 256, window // 8).
        batch_size: windows per model call.
        origin: full-image ``(row, col)`` of ``array[:, 0, 0]``.
        full_shape: full image ``(H, W)``; defaults to ``array``'s own shape (at ``origin``).
        region: output rows/cols ``(y0, y1, x0, x1)`` in full-image coordinates; defaults
            to all of ``array``.  ``array`` must contain every window touching it.
        overlap_io: serialise model calls with a process-wide lock (see module doc).
        progress: called with the number of windows finished after each batch.

    Returns NaN where every band is NaN.  The result for a pixel is the same whatever
    region or origin is used to compute it.
    """
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 3 or array.shape[0] != len(model.bands):
        raise BandMismatchError(
            f"The array has shape {array.shape}; expected (bands, y, x) with {len(model.bands)} bands "
            f"({', '.join(model.bands)}) for this model."
        )
    if batch_size < 1:
        raise InvalidParameterError(f"batch_size is {batch_size}; expected a positive integer (e.g. 8).")
    win, ovl = resolve_window(window, overlap, default_window=_card_window(model))
    oy, ox = origin
    full = full_shape or (oy + array.shape[1], ox + array.shape[2])
    grid = WindowGrid(int(full[0]), int(full[1]), win, ovl)
    ry0, ry1, rx0, rx1 = region or (oy, oy + array.shape[1], ox, ox + array.shape[2])
    starts = grid.touching(ry0, ry1, rx0, rx1)
    ext = grid.extent(starts)
    need = (ext[0], min(ext[1], grid.height), ext[2], min(ext[3], grid.width))
    have = (oy, oy + array.shape[1], ox, ox + array.shape[2])
    if need[0] < have[0] or need[1] > have[1] or need[2] < have[2] or need[3] > have[3]:
        raise InvalidParameterError(
            f"The array covers rows/cols {have} but the windows touching region {(ry0, ry1, rx0, rx1)} "
            f"need {need}; pass a larger array (region plus a halo of window - 1 px)."
        )
    sub = array[:, need[0] - oy : need[1] - oy, need[2] - ox : need[3] - ox]
    acc = _window_sums(
        sub,
        (need[0], need[2]),
        starts,
        grid,
        model,
        batch_size=batch_size,
        overlap_io=overlap_io,
        progress=progress,
    )
    probs = combine([acc], (ry0, ry1, rx0, rx1), model.num_classes).result()
    nodata = np.isnan(array[:, ry0 - oy : ry1 - oy, rx0 - ox : rx1 - ox]).all(axis=0)
    probs[:, nodata] = np.nan
    return probs


# --------------------------------------------------------------------------- dask shell


def _block_sizes(length: int, block: int) -> tuple[int, ...]:
    n, rest = divmod(length, block)
    return (block,) * n + ((rest,) if rest else ())


@dataclass(frozen=True)
class _AxisPlan:
    """Blocks along one axis: their edges, the windows starting in each and the rows/cols each reads."""

    edges: tuple[int, ...]
    starts: tuple[tuple[int, ...], ...]
    ends: tuple[int, ...]
    """End of the region block ``i`` reads: its core, or its last window's end (clipped)."""

    @classmethod
    def build(cls, sizes: Sequence[int], starts: np.ndarray, window: int, length: int) -> _AxisPlan:
        edges = (0, *np.cumsum([int(s) for s in sizes]).tolist())
        per_block = tuple(
            tuple(int(s) for s in starts if a <= s < b) for a, b in zip(edges[:-1], edges[1:], strict=True)
        )
        ends = tuple(
            min(max(b, (own[-1] + window) if own else b), length)
            for b, own in zip(edges[1:], per_block, strict=True)
        )
        return cls(edges, per_block, ends)

    def __len__(self) -> int:
        return len(self.starts)

    def reaching(self, i: int) -> list[int]:
        """Blocks whose windows reach into block ``i`` (always including ``i``)."""
        lo = self.edges[i]
        return [k for k in range(i + 1) if k == i or (self.starts[k] and self.ends[k] > lo)]


def _output_chunks(
    data: da.Array, grid: WindowGrid, chunks: int | tuple | None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Output block sizes along y and x.

    ``None``: the cube's chunk size rounded to a multiple of the stride (so windows
    rarely straddle blocks); an int or ``(int, int)``: regular blocks; a pair of
    tuples: exactly those block sizes.
    """
    h, w = grid.height, grid.width
    if chunks is None:
        sizes = []
        for length, axis_chunks in ((h, data.chunks[1]), (w, data.chunks[2])):
            c = int(axis_chunks[0]) if len(axis_chunks) > 1 else DEFAULT_BLOCK
            sizes.append(max(1, round(c / grid.stride)) * grid.stride if c < length else length)
        return _block_sizes(h, sizes[0]), _block_sizes(w, sizes[1])
    if isinstance(chunks, int):
        chunks = (chunks, chunks)
    cy, cx = chunks
    out = []
    for length, c in ((h, cy), (w, cx)):
        sizes = _block_sizes(length, int(c)) if isinstance(c, (int, np.integer)) else tuple(int(s) for s in c)
        if sum(sizes) != length or min(sizes) < 1:
            raise InvalidParameterError(
                f"The chunks {chunks} do not tile an image of {h} x {w} px; expected an int, "
                "a (rows, cols) pair of ints, or two tuples of block sizes that add up to the image size."
            )
        out.append(sizes)
    return out[0], out[1]


def _assemble(pieces: list, *, y_cuts: list[slice], x_cuts: list[slice]) -> np.ndarray:
    """Cut each input chunk to the region first, then join them: ``pieces[band][row][col]``."""
    return np.block(
        [
            [[c[:, y_cuts[r], x_cuts[k]] for k, c in enumerate(row)] for r, row in enumerate(band)]
            for band in pieces
        ]
    )


def _stage_windows(
    region: np.ndarray,
    model: Model,
    *,
    origin: tuple[int, int],
    starts: list[tuple[int, int]],
    grid: WindowGrid,
    core: tuple[int, int],
    kw: dict[str, Any],
) -> tuple[Accumulator, np.ndarray]:
    """Stage 1 for one block: weighted window sums, and which pixels of the block hold data."""
    region = np.asarray(region, dtype=np.float32)
    valid = ~np.isnan(region[:, : core[0], : core[1]]).all(axis=0)
    return _window_sums(region, origin, starts, grid, model, **kw), valid


def _stage_piece(
    stage1: tuple[Accumulator, np.ndarray], *, bounds: tuple[int, int, int, int]
) -> Accumulator | None:
    """The part of a block's window sums that falls in output block ``bounds`` (a copy)."""
    return stage1[0].cut(bounds)


def _stage_valid(stage1: tuple[Accumulator, np.ndarray]) -> np.ndarray:
    """Which pixels of a block hold data (kept apart so the window sums can be freed)."""
    return stage1[1]


def _stage_blend(
    parts: list[Accumulator | None],
    valid: np.ndarray,
    *,
    bounds: tuple[int, int, int, int],
    num_classes: int,
) -> np.ndarray:
    """Stage 2 for one block: add the pieces reaching into it, divide, NaN where no band has data."""
    probs = combine(parts, bounds, num_classes).result()
    probs[:, ~valid] = np.nan
    return probs


def _overlapping(edges: Sequence[int], lo: int, hi: int) -> tuple[list[int], list[slice]]:
    """Indices of the chunks (by ``edges``) that overlap ``[lo, hi)``, and the part of each inside it."""
    idx = [k for k in range(len(edges) - 1) if edges[k] < hi and edges[k + 1] > lo]
    cuts = [slice(max(lo, edges[k]) - edges[k], min(hi, edges[k + 1]) - edges[k]) for k in idx]
    return idx, cuts


def _build_graph(
    data: da.Array, grid: WindowGrid, py: _AxisPlan, px: _AxisPlan, model: Model, kw: dict[str, Any]
) -> da.Array:
    """The lazy probabilities as one dask graph layer of three task kinds per output block.

    * ``region``: cut the input chunks a block needs (block plus halo) and join them;
      a separate task, so reads and joins run in other threads while the model runs;
    * ``windows`` (stage 1): the windows starting in the block -> weighted sums, then
      ``piece`` tasks cut them per output block they reach and ``valid`` keeps the
      block's data mask (so the full sums are freed as soon as they are cut);
    * ``blend`` (stage 2): the pieces reaching into the block -> probabilities.

    The model is one node of the graph that every ``windows`` task depends on, so a
    distributed scheduler ships it once per worker rather than once per task.
    """
    token = uuid.uuid4().hex
    model_key = f"s2mask-model-{token}"
    region, windows, out = f"s2mask-region-{token}", f"{MODEL_STAGE}{token}", f"s2mask-blend-{token}"
    piece, valid = f"s2mask-piece-{token}", f"s2mask-valid-{token}"
    in_y = (0, *np.cumsum(data.chunks[1]).tolist())
    in_x = (0, *np.cumsum(data.chunks[2]).tolist())
    K = model.num_classes
    layer: dict[Any, Any] = {model_key: model}
    for i in range(len(py)):
        rows, y_cuts = _overlapping(in_y, py.edges[i], py.ends[i])
        for j in range(len(px)):
            cols, x_cuts = _overlapping(in_x, px.edges[j], px.ends[j])
            pieces = [[[(data.name, b, r, c) for c in cols] for r in rows] for b in range(data.numblocks[0])]
            layer[region, i, j] = (partial(_assemble, y_cuts=y_cuts, x_cuts=x_cuts), pieces)
            y0, y1, x0, x1 = py.edges[i], py.edges[i + 1], px.edges[j], px.edges[j + 1]
            stage1 = partial(
                _stage_windows,
                origin=(y0, x0),
                starts=[(y, x) for y in py.starts[i] for x in px.starts[j]],
                grid=grid,
                core=(y1 - y0, x1 - x0),
                kw=kw,
            )
            layer[windows, i, j] = (stage1, (region, i, j), model_key)
    for i in range(len(py)):
        for j in range(len(px)):
            bounds = (py.edges[i], py.edges[i + 1], px.edges[j], px.edges[j + 1])
            deps = []
            for a in py.reaching(i):
                for b in px.reaching(j):
                    layer[piece, a, b, i, j] = (partial(_stage_piece, bounds=bounds), (windows, a, b))
                    deps.append((piece, a, b, i, j))
            layer[valid, i, j] = (_stage_valid, (windows, i, j))
            stage2 = partial(_stage_blend, bounds=bounds, num_classes=K)
            layer[out, 0, i, j] = (stage2, deps, (valid, i, j))
    graph = HighLevelGraph.from_collections(out, layer, dependencies=[data])
    sizes_y = tuple(np.diff(py.edges).tolist())
    sizes_x = tuple(np.diff(px.edges).tolist())
    return da.Array(graph, out, chunks=((K,), sizes_y, sizes_x), dtype=np.float32)


def input_chunks(
    shape: tuple[int, int],
    model: Model,
    *,
    chunks: int | tuple[int, int],
    window: int | None = None,
    overlap: int | None = None,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Read chunks for a ``shape`` scene that match ``predict(..., chunks=chunks)``'s blocks.

    Each block is read as two chunks per axis: the rows (columns) that the block
    above (to the left) also needs for its windows' halo, and the rest.  The halo parts
    are all that a neighbour keeps, so :mod:`s2mask.engine.stream` holds thin strips
    instead of whole chunks between blocks (and re-reads only those at strip edges).
    """
    win, ovl = resolve_window(window, overlap, default_window=_card_window(model))
    grid = WindowGrid(int(shape[0]), int(shape[1]), win, ovl)
    h, w = int(shape[0]), int(shape[1])
    pair = (chunks, chunks) if isinstance(chunks, (int, np.integer)) else tuple(chunks)
    out = []
    for length, block, starts in ((h, pair[0], grid.starts_y), (w, pair[1], grid.starts_x)):
        plan = _AxisPlan.build(_block_sizes(length, int(block)), starts, win, length)
        cuts = set(plan.edges)
        for i, end in enumerate(plan.ends[:-1]):
            if plan.edges[i + 1] < end < plan.edges[i + 2]:
                cuts.add(end)
        edges = sorted(cuts)
        out.append(tuple(int(b - a) for a, b in zip(edges[:-1], edges[1:], strict=True)))
    return out[0], out[1]


def predict(
    cube: xr.DataArray,
    model: Model,
    *,
    window: int | None = None,
    overlap: int | None = None,
    batch_size: int = 8,
    chunks: int | tuple | None = None,
    progress: Progress | None = None,
    overlap_io: bool = True,
) -> xr.DataArray:
    """Lazy class probabilities for a reflectance cube.

    Args:
        cube: ``("band", "y", "x")`` reflectance in [0, 1], NaN = nodata, band coord with
            ESA names (any extra bands are ignored), preferably dask-backed.
        model: a :class:`Model` (``LoadedModel``, a ``ModelRef`` for a dask cluster, a test model).
        window: window side in px (default: the model card's ``window_size`` or 256).
        overlap: overlap between windows in px (default ``window // 8``; must be < window / 2).
        batch_size: windows per model call.
        chunks: output blocks: None = the cube's chunk size rounded to a multiple of the
            window stride (no window is then split between blocks); an int or ``(rows, cols)``;
            or two tuples of block sizes.  The result does not depend on it; memory grows with it.
        progress: called with the number of windows finished; they add up to
            :func:`count_windows`.  Runs in scheduler threads (local schedulers only).
        overlap_io: serialise model calls per process so reads overlap inference (module doc).

    Returns:
        A lazy dask-backed ``xr.DataArray`` ``("class", "y", "x")`` float32 of probabilities,
        class coord = the card's class names, NaN where every input band is NaN, with the
        cube's y/x coords and CRS.
    """
    if batch_size < 1:
        raise InvalidParameterError(f"batch_size is {batch_size}; expected a positive integer (e.g. 8).")
    cube = select_bands(cube, model)
    win, ovl = resolve_window(window, overlap, default_window=_card_window(model))
    grid = WindowGrid(cube.sizes["y"], cube.sizes["x"], win, ovl)
    data = cube.data if isinstance(cube.data, da.Array) else da.from_array(np.asarray(cube.data))
    data = data.astype(np.float32)
    ys, xs = _output_chunks(data, grid, chunks)
    kw = {"batch_size": batch_size, "overlap_io": overlap_io, "progress": progress}
    plan_y = _AxisPlan.build(ys, grid.starts_y, win, grid.height)
    plan_x = _AxisPlan.build(xs, grid.starts_x, win, grid.width)
    probs = _build_graph(data, grid, plan_y, plan_x, model, kw)

    coords = {k: v for k, v in cube.coords.items() if "band" not in v.dims}
    out = xr.DataArray(
        probs,
        dims=("class", "y", "x"),
        coords={**coords, "class": list(class_names(model))},
        name="probability",
    )
    out.attrs.update(
        {"window": win, "overlap": ovl, "model": getattr(getattr(model, "card", None), "name", "")}
    )
    crs = cube.rio.crs
    if crs is not None:
        out = out.rio.write_crs(crs)
    return out
