"""The composite core: a time stack of cubes and masks -> one cloud-free image, lazily.

``composite`` brings every scene, mask and probability onto one grid, grows clouds and shadows by
``buffer`` pixels, stacks the scenes along time with dask so that each output block reads only
that block of each scene, and reduces each block with a method from :mod:`.methods`.  Memory is
therefore bounded by ``chunks**2 x scenes x bands`` (times the dask threads), not by scene size.

Scenes are taken in an ``order`` (input, least cloudy, oldest, newest, closest to a target date).
With ``max_observations`` each pixel uses only its first N clear observations in that order, and each
output block reads its scenes one after the other and stops once every pixel of the block has N:
later scenes of that block are never read nor predicted (the block's inputs are computed inside its
task, scene by scene, with the synchronous scheduler).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import date, datetime, timezone
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from s2mask.composite.buffer import CLEAR, NODATA, dilate_mask
from s2mask.composite.grid import Grid, to_grid
from s2mask.composite.methods import CompositeMethod, Method, PercentileMethod, get_method
from s2mask.errors import BandMismatchError, InvalidParameterError

__all__ = ["composite", "to_uint16", "SOURCE_NODATA", "REFLECTANCE_SCALE", "ORDERS", "layer_names"]

REFLECTANCE_SCALE = 10000
"""uint16 output = round(reflectance x 10000); 0 is nodata."""

SOURCE_NODATA = {np.dtype("uint8"): 255, np.dtype("uint16"): 65535}
"""Nodata of ``source_index`` by dtype (uint8 for fewer than 255 scenes)."""

ORDERS = ("input", "least-cloudy", "oldest", "newest", "target-date")
"""Scene orders: which scene is read first, wins ``first`` and best-pixel ties, and counts first
towards ``max_observations``."""

EPOCH_DAYS_MAX = 65534
"""The ``date`` layer is uint16 days since 1970-01-01 (0: none), so dates up to 2149-06-04."""

DateLike = str | date | datetime | np.datetime64


def _as_datetime64(value: Any, what: str) -> np.datetime64:
    """A UTC ``datetime64[s]`` from ISO 8601 text (``Z`` and offsets allowed), a date or a datetime."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):  # numpy may still read it (e.g. "2024-06"); else error below
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if isinstance(value, datetime) and value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    try:
        out = np.datetime64(value, "s")
    except (ValueError, TypeError) as exc:
        raise InvalidParameterError(
            f"The {what} {value!r} is not a date; expected ISO 8601 such as 2024-06-01 or 2024-06-01T10:30:00."
        ) from exc
    if np.isnat(out):
        raise InvalidParameterError(f"The {what} is missing (NaT); give an ISO 8601 date such as 2024-06-01.")
    return out


def _scene_dates(cubes: Sequence[xr.DataArray], dates: Sequence[DateLike] | None) -> np.ndarray | None:
    """The acquisition times: ``dates`` if given, else every cube's ``datetime`` attribute, else None."""
    if dates is not None:
        if len(dates) != len(cubes):
            raise InvalidParameterError(
                f"{len(dates)} dates were given for {len(cubes)} scenes; give one date per scene."
            )
        return np.array([_as_datetime64(d, "scene date") for d in dates])
    found = [c.attrs.get("datetime") for c in cubes]
    if any(d is None or d == "" for d in found):
        return None
    return np.array([_as_datetime64(d, "scene datetime attribute") for d in found])


def _scene_order(
    order: str | None,
    n: int,
    *,
    dates: np.ndarray | None,
    target_date: DateLike | None,
    cloud: Any,
) -> tuple[np.ndarray, str]:
    """Input indices in processing order, and the order's name; ties keep input order.

    ``cloud`` is a callable giving each scene's cloud share (only called for ``least-cloudy``).
    """
    name = order or ("target-date" if target_date is not None else "input")
    if name not in ORDERS:
        raise InvalidParameterError(f"Unknown scene order {order!r}; expected one of {', '.join(ORDERS)}.")
    if target_date is not None and name != "target-date":
        raise InvalidParameterError(
            f"A target date was given with order={name!r}; the target date is itself an order "
            "(closest scene first). Use order='target-date' or drop the target date."
        )
    if name == "input":
        return np.arange(n), name
    if name == "least-cloudy":
        key = np.asarray(cloud(), dtype=np.float64)
    else:
        if dates is None:
            raise InvalidParameterError(
                f"order={name!r} needs scene dates but the scenes have no dates; pass dates=[...] "
                "(one per scene) or open products whose cubes carry a 'datetime' attribute."
            )
        if name == "target-date":
            if target_date is None:
                raise InvalidParameterError("order='target-date' needs a target date (e.g. 2024-07-01).")
            target = _as_datetime64(target_date, "target date")
            key = np.abs((dates - target).astype("int64"))
        else:
            key = dates.astype("int64") * (1 if name == "oldest" else -1)
    return np.lexsort((np.arange(n), key)), name


def _cloud_shares(cubes: Sequence[xr.DataArray], masks: Sequence[xr.DataArray] | None) -> np.ndarray:
    """Each scene's cloud + shadow share: ``eo:cloud_cover`` attributes, else counted on the masks."""
    given = [c.attrs.get("eo:cloud_cover") for c in cubes]
    if all(g is not None and g != "" for g in given):
        return np.array([float(g) / 100 for g in given])
    if masks is None:
        raise InvalidParameterError(
            "order='least-cloudy' needs each scene's cloud cover: give masks, or cubes with an "
            "'eo:cloud_cover' attribute (STAC items carry it); computing it from the model would "
            "predict every scene twice."
        )
    shares = []
    for m in masks:
        data = m.data
        cloudy = ((data == 1) | (data == 2)).sum()
        valid = (data != NODATA).sum()
        shares.append(cloudy / da.maximum(valid, 1) if isinstance(data, da.Array) else cloudy / max(valid, 1))
    return np.asarray(dask.compute(*shares), dtype=np.float64)


def _epoch_days(dates: np.ndarray) -> np.ndarray:
    """Whole days since 1970-01-01 of each scene date (floor)."""
    days = dates.astype("datetime64[D]").astype(np.int64)
    if days.min() < 1 or days.max() > EPOCH_DAYS_MAX:
        raise InvalidParameterError(
            f"Scene dates {dates.min()} .. {dates.max()} are outside 1970-01-02 .. 2149-06-04, the range of "
            "the uint16 date band; check the dates."
        )
    return days


def _check_inputs(cubes: Sequence[xr.DataArray], masks: Any, probabilities: Any) -> tuple[str, ...]:
    if not cubes:
        raise InvalidParameterError("No scenes were given to composite; give at least one cube.")
    for name, extra in (("masks", masks), ("probabilities", probabilities)):
        if extra is not None and len(extra) != len(cubes):
            raise InvalidParameterError(
                f"{len(extra)} {name} were given for {len(cubes)} scenes; give one per scene, in the same order."
            )
    if masks is None and probabilities is None:
        raise InvalidParameterError(
            "Neither masks nor probabilities were given; composite needs to know which pixels are clear. "
            "Compute them with s2mask.engine.predict and s2mask.mask.to_mask, or use composite_products."
        )
    bands = tuple(str(b) for b in cubes[0]["band"].values)
    for i, cube in enumerate(cubes):
        if cube.dims != ("band", "y", "x"):
            raise InvalidParameterError(f"Scene {i} has dims {cube.dims}; expected ('band', 'y', 'x').")
        other = tuple(str(b) for b in cube["band"].values)
        if other != bands:
            raise BandMismatchError(
                f"Scene {i} has bands {', '.join(other)} but scene 0 has {', '.join(bands)}; "
                "open every product with the same bands= list."
            )
    return bands


def _spatial(data: Any, chunks: int) -> da.Array:
    """``data`` as a dask array whose last two axes are chunked ``chunks`` x ``chunks``; others whole."""
    arr = data if isinstance(data, da.Array) else da.from_array(np.asarray(data), chunks=-1)
    return arr.rechunk((-1,) * (arr.ndim - 2) + (chunks, chunks))


def _mask_of(mask: xr.DataArray) -> xr.DataArray:
    if "band" in mask.dims:
        if mask.sizes["band"] != 1:
            raise InvalidParameterError(
                f"A mask has {mask.sizes['band']} bands; expected one band of classes "
                "(0 clear, 1 cloud, 2 shadow, 255 nodata) as written by s2mask mask."
            )
        mask = mask.squeeze("band", drop=True)
    if mask.dtype != np.uint8:
        mask = mask.fillna(NODATA).astype(np.uint8) if mask.dtype.kind == "f" else mask.astype(np.uint8)
    return mask


def _georeferenced_like(mask: xr.DataArray, cube: xr.DataArray) -> xr.DataArray:
    """A mask without a CRS but with its scene's shape lies on its scene's grid: say so."""
    if mask.rio.crs is not None:
        return mask
    if mask.shape != (cube.rio.height, cube.rio.width):
        raise InvalidParameterError(
            f"A mask has no CRS and shape {mask.shape}, but its scene is {cube.rio.height} x {cube.rio.width}; "
            "give a georeferenced mask (an s2mask mask COG) or one of the scene's shape."
        )
    src = Grid.of(cube)
    return mask.assign_coords(src.coords()).rio.write_crs(src.crs).rio.write_transform(src.transform)


def _reduce_block(
    values: np.ndarray,
    mask: np.ndarray,
    score: np.ndarray | None = None,
    *,
    method: CompositeMethod,
    source_of: np.ndarray,
    days: np.ndarray | None = None,
    min_observations: int = 1,
    max_observations: int | None = None,
) -> np.ndarray:
    """One block: ``(T, B, h, w)``, ``(T, h, w)`` -> ``(B + 1 + extras [+ date], h, w)`` float32.

    Scenes are in processing order (``source_of[t]`` is scene ``t``'s input index, ``days[t]`` its
    date).  Each pixel uses its first ``max_observations`` clear observations; fewer than
    ``min_observations`` make it nodata (NaN, source -1) but its ``count`` is kept.
    """
    clear = (mask == CLEAR) & np.isfinite(values).all(axis=1)
    if max_observations is not None:
        clear &= np.cumsum(clear, axis=0) <= max_observations
    out, extras = method.reduce(values, clear, score=score, rank=np.arange(len(values)))
    count = clear.sum(axis=0)
    short = count < max(min_observations, 1)
    out[:, short] = np.nan
    layers = [out, count.astype(np.float32)[None]]
    for name in method.extra_layers:
        extra = extras[name]
        if name == "source_index":
            extra = np.where(short | (extra < 0), -1, np.asarray(source_of)[np.maximum(extra, 0)])
            if days is not None:
                chosen = np.where(extra < 0, 0, np.asarray(days)[np.maximum(extras[name], 0)])
                layers.append(extra.astype(np.float32)[None])
                layers.append(chosen.astype(np.float32)[None])
                continue
        layers.append(extra.astype(np.float32)[None])
    return np.concatenate(layers, axis=0)


class _Scenes:
    """The lazy per-scene inputs of the sequential path, in processing order.

    dask does not look inside this object, so a block's task receives the scenes' graphs whole and
    computes only the slices it needs, one scene at a time (:func:`_sequential_block`).
    """

    def __init__(self, values: list[da.Array], masks: list[da.Array], scores: list[da.Array] | None) -> None:
        self.values, self.masks, self.scores = values, masks, scores

    def __len__(self) -> int:
        return len(self.values)

    def read(self, t: int, ys: slice, xs: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        parts = [self.values[t][:, ys, xs], self.masks[t][ys, xs]]
        if self.scores is not None:
            parts.append(self.scores[t][ys, xs])
        got = dask.compute(*parts, scheduler="sync")  # inside a task: no nested thread pool
        return got[0], got[1], got[2] if self.scores is not None else None


def _sequential_block(
    block: np.ndarray,
    *,
    scenes: _Scenes,
    max_observations: int,
    block_info: dict | None = None,
    **reduce: Any,
) -> np.ndarray:
    """One output block read scene by scene, stopping once every pixel has ``max_observations`` clear ones."""
    (y0, y1), (x0, x1) = block_info[0]["array-location"]
    have = np.zeros(block.shape, np.int64)
    values, masks, scores = [], [], []
    for t in range(len(scenes)):
        v, m, sc = scenes.read(t, slice(y0, y1), slice(x0, x1))
        values.append(v)
        masks.append(m)
        scores.append(sc)
        have += (m == CLEAR) & np.isfinite(v).all(axis=0)
        if (have >= max_observations).all():
            break
    k = len(values)
    days = reduce.pop("days")
    return _reduce_block(
        np.stack(values), np.stack(masks), None if scenes.scores is None else np.stack(scores),
        source_of=reduce.pop("source_of")[:k], days=None if days is None else days[:k],
        max_observations=max_observations, **reduce,
    )  # fmt: skip


def layer_names(method: str | CompositeMethod, *, dated: bool = False) -> tuple[str, ...]:
    """Names of the per-pixel layers besides reflectance: ``count``, the method's extras and,
    for methods that pick an observation and scenes with dates (``dated``), ``date``."""
    if isinstance(method, CompositeMethod):
        extras = method.extra_layers
    else:
        extras = Method[str(method).strip().lower().replace("-", "_")].value.extra_layers
    return ("count", *extras, *(("date",) if dated and "source_index" in extras else ()))


def composite(
    cubes: Sequence[xr.DataArray],
    masks: Sequence[xr.DataArray] | None = None,
    *,
    probabilities: Sequence[xr.DataArray] | None = None,
    method: str | CompositeMethod = "median",
    percentile: float | None = None,
    buffer: int = 0,
    order: str | None = None,
    target_date: DateLike | None = None,
    dates: Sequence[DateLike] | None = None,
    min_observations: int = 1,
    max_observations: int | None = None,
    grid: Grid | None = None,
    chunks: int = 1024,
    resampling: str = "bilinear",
) -> xr.Dataset:
    """Composite a time series of scenes into one cloud-free image, lazily.

    Args:
        cubes: scenes as ``("band", "y", "x")`` float32 reflectance, NaN nodata, CRS via rioxarray,
            all with the same bands; dask-backed for large scenes.
        masks: one ``(y, x)`` uint8 mask per scene (0 clear, 1 cloud, 2 shadow, 255 nodata), e.g.
            from ``s2mask.mask.to_mask`` or an s2mask mask COG.  Derived from ``probabilities`` when
            omitted.
        probabilities: one ``("class", "y", "x")`` probability cube per scene (class 0 clear); used
            by ``best-pixel`` (score = 1 - P(clear)), and for masks when ``masks`` is omitted.
        method: ``"median"`` (default), ``"mean"``, ``"percentile"`` (with ``percentile``),
            ``"best-pixel"``, ``"medoid"``, ``"geomedian"``, ``"first"`` or a :class:`CompositeMethod`.
        percentile: ``q`` (0-100) of ``method="percentile"``.
        buffer: grow cloud and shadow by this many pixels before compositing.
        order: the scene order (one of :data:`ORDERS`): ``"input"`` (default), ``"least-cloudy"``
            (``eo:cloud_cover`` attributes, else counted on ``masks``), ``"oldest"``, ``"newest"``
            or ``"target-date"`` (closest to ``target_date`` first; the default when one is given).
            ``first`` takes the first clear scene in this order, best-pixel breaks ties by it, and
            ``max_observations`` counts in it.
        target_date: the date of ``order="target-date"`` (needs dates).
        dates: one acquisition date per scene; default each cube's ``datetime`` attribute.
        min_observations: pixels with fewer clear observations are nodata (their ``count`` is kept).
        max_observations: each pixel uses only its first N clear observations in scene order, and
            a block stops reading scenes once all its pixels have N (later scenes are not read).
        grid: output grid; default the first scene's (see :func:`~s2mask.composite.grid.target_grid`).
        chunks: block size in pixels: peak memory is about
            ``threads x scenes x bands x chunks**2 x 4 bytes x 3``.
        resampling: how reflectance is resampled onto ``grid`` (masks always use nearest).

    Returns:
        A lazy ``xr.Dataset`` on ``grid`` (CRS via rioxarray) with ``reflectance``
        ``("band", "y", "x")`` float32, NaN where a pixel has fewer than ``min_observations`` (and
        at least one) clear observations; ``count`` ``(y, x)`` uint16, the clear observations used;
        for the methods that pick one observation (best-pixel, medoid, first) ``source_index``
        ``(y, x)``, the chosen scene's input index (uint8 with nodata 255, or uint16 with 65535
        from 255 scenes on), and, when the scenes have dates, ``date`` ``(y, x)`` uint16, the
        chosen observation's days since 1970-01-01 (0: none).  An observation is clear where its
        mask is 0 and every band is finite.
    """
    bands = _check_inputs(cubes, masks, probabilities)
    meth = get_method(method, percentile=percentile)
    _check_counts(min_observations, max_observations, chunks)
    when = _scene_dates(cubes, dates)
    grid = grid or Grid.of(cubes[0])

    # everything on one grid, lazily
    scenes = [to_grid(c.astype(np.float32), grid, resampling=resampling) for c in cubes]
    probs = None
    if probabilities is not None:
        probs = [to_grid(p.astype(np.float32), grid, resampling=resampling) for p in probabilities]
    counted = masks is not None  # masks the model computes are not counted for least-cloudy
    if masks is None:
        from s2mask.mask import to_mask

        masks = [to_mask(p) for p in probs]
    on_grid = [
        to_grid(_georeferenced_like(_mask_of(m), c), grid, resampling="nearest", nodata=NODATA)
        for m, c in zip(masks, cubes, strict=True)
    ]
    classes = [dilate_mask(m, buffer) for m in on_grid]

    # the scene order: processing position -> input index
    perm, order_name = _scene_order(
        order,
        len(cubes),
        dates=when,
        target_date=target_date,
        cloud=lambda: _cloud_shares(cubes, on_grid if counted else None),
    )
    days = None if when is None or "source_index" not in meth.extra_layers else _epoch_days(when)[perm]
    values = [_spatial(scenes[i].data, chunks) for i in perm]
    mask = [_spatial(classes[i].data, chunks) for i in perm]
    score = None
    if probs is not None and meth.uses_score:
        score = [_spatial(1 - probs[i].data[0], chunks) for i in perm]
    reduce = dict(method=meth, source_of=perm, days=days, min_observations=int(min_observations))
    n_layers = len(bands) + 1 + len(meth.extra_layers) + (days is not None)
    if max_observations is None:  # one graph: each block reads that block of every scene
        inputs: list[Any] = [da.stack(values), "tbyx", da.stack(mask), "tyx"]
        if score is not None:
            inputs += [da.stack(score), "tyx"]
        out = da.blockwise(
            _reduce_block,
            "lyx",
            *inputs,
            new_axes={"l": n_layers},
            concatenate=True,
            dtype=np.float32,
            **reduce,
        )
    else:  # scene by scene inside each block's task, stopping when the block is complete
        template = da.zeros(grid.shape, chunks=chunks, dtype=np.uint8)
        out = da.map_blocks(
            _sequential_block, template, new_axis=0, chunks=((n_layers,), *template.chunks), dtype=np.float32,
            scenes=_Scenes(values, mask, score), max_observations=int(max_observations), **reduce,
        )  # fmt: skip
    attrs = {
        "buffer": int(buffer),
        "target_date": "" if target_date is None else str(target_date),
        "order": order_name,
        "order_scenes": [int(i) for i in perm],
        "min_observations": int(min_observations),
        "max_observations": 0 if max_observations is None else int(max_observations),
    }
    if isinstance(meth, PercentileMethod):
        attrs["percentile"] = meth.q
    return _to_dataset(out, bands=bands, grid=grid, method=meth, dates=when, n=len(cubes), attrs=attrs)


def _check_counts(min_observations: int, max_observations: int | None, chunks: int) -> None:
    if int(chunks) < 16:
        raise InvalidParameterError(
            f"chunks={chunks} is too small; expected a block size of 16 pixels or more."
        )
    if int(min_observations) < 1:
        raise InvalidParameterError(
            f"min_observations={min_observations}; expected 1 or more (1: any clear observation counts)."
        )
    if max_observations is not None:
        if int(max_observations) < 1:
            raise InvalidParameterError(
                f"max_observations={max_observations}; expected 1 or more, or None to use every scene."
            )
        if int(max_observations) < int(min_observations):
            raise InvalidParameterError(
                f"max_observations={max_observations} is below min_observations={min_observations}: "
                "no pixel could be valid. Raise max_observations or lower min_observations."
            )


def _to_dataset(
    out: da.Array,
    *,
    bands: tuple[str, ...],
    grid: Grid,
    method: CompositeMethod,
    dates: np.ndarray | None,
    n: int,
    attrs: dict[str, Any],
) -> xr.Dataset:
    nb = len(bands)
    coords = grid.coords()
    data_vars: dict[str, Any] = {
        "reflectance": (("band", "y", "x"), out[:nb]),
        "count": (("y", "x"), out[nb].astype(np.uint16)),
    }
    if "source_index" in method.extra_layers:
        dt = np.dtype("uint8") if n < 255 else np.dtype("uint16")
        src = out[nb + 1]
        data_vars["source_index"] = (("y", "x"), da.where(src < 0, SOURCE_NODATA[dt], src).astype(dt))
        if out.shape[0] > nb + 2:
            data_vars["date"] = (("y", "x"), out[nb + 2].astype(np.uint16))
    ds = xr.Dataset(data_vars, coords={"band": list(bands), **coords})
    ds.attrs.update(
        method=method.name,
        scenes=n,
        dates=[] if dates is None else [str(d) for d in dates],
        **attrs,
    )
    if "source_index" in ds:
        ds["source_index"].attrs["nodata"] = SOURCE_NODATA[ds["source_index"].dtype]
    if "date" in ds:
        ds["date"].attrs.update(units="days since 1970-01-01", nodata=0)
    return ds.rio.write_crs(grid.crs).rio.write_transform(grid.transform)


def to_uint16(result: xr.Dataset, *, bands: Sequence[str] | None = None) -> xr.DataArray:
    """The composite as one ``("band", "y", "x")`` uint16 array ready for a COG, nodata 0.

    Reflectance becomes ``round(x * 10000)`` clipped to 1..65535 (so a valid 0 never reads as
    nodata); then ``count`` (0 where no clear observation); then, for the methods that pick an
    observation, ``source``: the 1-based number of the chosen scene (0 = none), and ``date``: its
    days since 1970-01-01 (0 = none).  Every band but ``count`` is 0 where a pixel has fewer than
    ``min_observations`` clear observations; every band is 0 where it has none.
    """
    refl = result["reflectance"]
    if bands is not None:
        missing = [b for b in bands if b not in refl["band"].values]
        if missing:
            raise BandMismatchError(
                f"Bands {', '.join(missing)} are not in the composite ({', '.join(map(str, refl['band'].values))}); "
                "choose output bands among the composited ones."
            )
        refl = refl.sel(band=list(bands))
    valid = result["count"] >= max(1, int(result.attrs.get("min_observations", 1)))
    scaled = (refl * REFLECTANCE_SCALE).round().clip(1, 65535).where(valid, 0).fillna(0).astype(np.uint16)
    layers = [scaled, result["count"].astype(np.uint16).expand_dims(band=["count"])]
    if "source_index" in result:
        src = result["source_index"]
        layers.append(
            (src.astype(np.uint16) + 1).where(valid, 0).astype(np.uint16).expand_dims(band=["source"])
        )
    if "date" in result:
        layers.append(result["date"].where(valid, 0).astype(np.uint16).expand_dims(band=["date"]))
    out = xr.concat(layers, dim="band", coords="minimal", compat="override", join="override")
    out.attrs = {}
    out.name = "composite"
    return out.rio.write_crs(result.rio.crs).rio.write_transform(result.rio.transform()).rio.write_nodata(0)
