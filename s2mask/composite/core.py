"""The composite core: a time stack of cubes and masks -> one cloud-free image, lazily.

``composite`` brings every scene, mask and probability onto one grid, grows clouds and shadows by
``buffer`` pixels, stacks the scenes along time with dask so that each output block reads only
that block of each scene, and reduces each block with a method from :mod:`.methods`.  Memory is
therefore bounded by ``chunks**2 x scenes x bands`` (times the dask threads), not by scene size.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import date, datetime, timezone
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from s2mask.composite.buffer import CLEAR, NODATA, dilate_mask
from s2mask.composite.grid import Grid, to_grid
from s2mask.composite.methods import CompositeMethod, get_method
from s2mask.errors import BandMismatchError, InvalidParameterError

__all__ = ["composite", "to_uint16", "SOURCE_NODATA", "REFLECTANCE_SCALE", "layer_names"]

REFLECTANCE_SCALE = 10000
"""uint16 output = round(reflectance x 10000); 0 is nodata."""

SOURCE_NODATA = {np.dtype("uint8"): 255, np.dtype("uint16"): 65535}
"""Nodata of ``source_index`` by dtype (uint8 for fewer than 255 scenes)."""

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


def _tie_rank(n: int, dates: np.ndarray | None, target_date: DateLike | None) -> np.ndarray:
    """Rank of each scene for breaking ties: closeness to ``target_date``, then input order."""
    if target_date is None:
        return np.arange(n)
    if dates is None:
        raise InvalidParameterError(
            "A target date was given but the scenes have no dates; pass dates=[...] "
            "(one per scene) or open products whose cubes carry a 'datetime' attribute."
        )
    target = _as_datetime64(target_date, "target date")
    distance = np.abs((dates - target).astype("int64"))
    order = np.lexsort((np.arange(n), distance))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    return rank


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
    rank: np.ndarray,
) -> np.ndarray:
    """One block: ``(T, B, h, w)``, ``(T, h, w)`` -> ``(B + 1 + extras, h, w)`` float32 (count, extras last)."""
    clear = (mask == CLEAR) & np.isfinite(values).all(axis=1)
    out, extras = method.reduce(values, clear, score=score, rank=rank)
    layers = [out, clear.sum(axis=0, dtype=np.float32)[None]]
    layers += [extras[name].astype(np.float32)[None] for name in method.extra_layers]
    return np.concatenate(layers, axis=0)


def layer_names(method: str | CompositeMethod) -> tuple[str, ...]:
    """Names of the per-pixel layers besides reflectance: ``count`` and the method's extras."""
    return ("count", *get_method(method).extra_layers)


def composite(
    cubes: Sequence[xr.DataArray],
    masks: Sequence[xr.DataArray] | None = None,
    *,
    probabilities: Sequence[xr.DataArray] | None = None,
    method: str | CompositeMethod = "median",
    buffer: int = 0,
    target_date: DateLike | None = None,
    dates: Sequence[DateLike] | None = None,
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
        method: ``"median"`` (default), ``"mean"``, ``"best-pixel"`` or a :class:`CompositeMethod`.
        buffer: grow cloud and shadow by this many pixels before compositing.
        target_date: best-pixel ties go to the scene closest to this date (needs dates).
        dates: one acquisition date per scene; default each cube's ``datetime`` attribute.
        grid: output grid; default the first scene's (see :func:`~s2mask.composite.grid.target_grid`).
        chunks: block size in pixels: peak memory is about
            ``threads x scenes x bands x chunks**2 x 4 bytes x 3``.
        resampling: how reflectance is resampled onto ``grid`` (masks always use nearest).

    Returns:
        A lazy ``xr.Dataset`` on ``grid`` (CRS via rioxarray) with ``reflectance``
        ``("band", "y", "x")`` float32, NaN where no observation is clear; ``count`` ``(y, x)``
        uint16, the number of clear observations; and for best-pixel ``source_index`` ``(y, x)``,
        the chosen scene (uint8 with nodata 255, or uint16 with 65535 from 255 scenes on).  An
        observation is clear where its mask is 0 and every band is finite.
    """
    bands = _check_inputs(cubes, masks, probabilities)
    meth = get_method(method)
    when = _scene_dates(cubes, dates)
    rank = _tie_rank(len(cubes), when, target_date)
    grid = grid or Grid.of(cubes[0])
    if int(chunks) < 16:
        raise InvalidParameterError(
            f"chunks={chunks} is too small; expected a block size of 16 pixels or more."
        )

    # everything on one grid, lazily
    scenes = [to_grid(c.astype(np.float32), grid, resampling=resampling) for c in cubes]
    probs = None
    if probabilities is not None:
        probs = [to_grid(p.astype(np.float32), grid, resampling=resampling) for p in probabilities]
    if masks is None:
        from s2mask.mask import to_mask

        masks = [to_mask(p) for p in probs]
    classes = [
        dilate_mask(
            to_grid(_georeferenced_like(_mask_of(m), c), grid, resampling="nearest", nodata=NODATA), buffer
        )
        for m, c in zip(masks, cubes, strict=True)
    ]

    # time stacks chunked only in space: one block holds that block of every scene
    values = da.stack([_spatial(s.data, chunks) for s in scenes])
    mask = da.stack([_spatial(m.data, chunks) for m in classes])
    inputs: list[Any] = [values, "tbyx", mask, "tyx"]
    if probs is not None and meth.uses_score:
        inputs += [da.stack([_spatial(1 - p.data[0], chunks) for p in probs]), "tyx"]
    n_layers = len(bands) + 1 + len(meth.extra_layers)
    out = da.blockwise(
        _reduce_block, "lyx", *inputs,
        new_axes={"l": n_layers}, concatenate=True, dtype=np.float32,
        method=meth, rank=rank,
    )  # fmt: skip
    return _to_dataset(out, bands=bands, grid=grid, method=meth, dates=when, n=len(cubes),
                       attrs={"buffer": int(buffer), "target_date": "" if target_date is None else str(target_date)})  # fmt: skip


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
    ds = xr.Dataset(data_vars, coords={"band": list(bands), **coords})
    ds.attrs.update(
        method=method.name,
        scenes=n,
        dates=[] if dates is None else [str(d) for d in dates],
        **attrs,
    )
    if "source_index" in ds:
        ds["source_index"].attrs["nodata"] = SOURCE_NODATA[ds["source_index"].dtype]
    return ds.rio.write_crs(grid.crs).rio.write_transform(grid.transform)


def to_uint16(result: xr.Dataset, *, bands: Sequence[str] | None = None) -> xr.DataArray:
    """The composite as one ``("band", "y", "x")`` uint16 array ready for a COG, nodata 0.

    Reflectance becomes ``round(x * 10000)`` clipped to 1..65535 (so a valid 0 never reads as
    nodata); then ``count`` (0 where no clear observation); then, for best-pixel, ``source``: the
    1-based number of the chosen scene (0 = none).  Every band is 0 where ``count`` is 0.
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
    valid = result["count"] > 0
    scaled = (refl * REFLECTANCE_SCALE).round().clip(1, 65535).where(valid, 0).fillna(0).astype(np.uint16)
    layers = [scaled, result["count"].where(valid, 0).astype(np.uint16).expand_dims(band=["count"])]
    if "source_index" in result:
        src = result["source_index"]
        layers.append(
            (src.astype(np.uint16) + 1).where(valid, 0).astype(np.uint16).expand_dims(band=["source"])
        )
    out = xr.concat(layers, dim="band", coords="minimal", compat="override", join="override")
    out.attrs = {}
    out.name = "composite"
    return out.rio.write_crs(result.rio.crs).rio.write_transform(result.rio.transform()).rio.write_nodata(0)
