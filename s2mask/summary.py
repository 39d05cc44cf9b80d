"""Per-product JSON summaries: class fractions of a mask, counted without loading it whole.

:func:`mask_summary` counts the values of a (lazy) uint8 mask block by block with
``np.bincount`` (one 256-bin histogram per dask block, summed), then reports:

- ``fractions``: ``clear``/``cloud``/``shadow`` as fractions of the *valid* pixels
  (``None`` when no pixel is valid) and ``nodata`` as a fraction of *all* pixels;
- ``counts``: pixel counts per class, ``nodata``, ``valid`` and ``total`` (plus
  ``unknown`` for values that are neither a class nor nodata, when there are any);
- the raster's ``shape``, ``crs``, ``resolution`` and ``bounds``; the ``product_id``, the
  ``model`` (name, version), ``timing`` (filled by the caller) and ``s2mask_version``.

:func:`write_summary` writes such a dict as JSON, atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from s2mask import __version__
from s2mask._atomic import atomic_write_text
from s2mask.errors import InvalidParameterError
from s2mask.mask import CLASSES, NODATA, class_counts, fractions_from_counts

__all__ = ["class_counts", "mask_summary", "write_summary"]


def _geo(mask: Any) -> dict[str, Any]:
    """CRS, resolution and bounds of a rioxarray-aware DataArray (``None`` when unknown)."""
    out: dict[str, Any] = {"crs": None, "resolution": None, "bounds": None}
    if not isinstance(mask, xr.DataArray):
        return out
    try:
        crs = mask.rio.crs
        if crs is not None:
            epsg = crs.to_epsg()
            out["crs"] = f"EPSG:{epsg}" if epsg else crs.to_wkt()
        xres, yres = mask.rio.resolution()
        out["resolution"] = [abs(float(xres)), abs(float(yres))]
        out["bounds"] = [float(v) for v in mask.rio.bounds()]
    except Exception:  # no spatial dims or coords: leave the geometry unknown
        pass
    return out


def _model_entry(model: Any) -> dict[str, Any] | None:
    if model is None:
        return None
    if isinstance(model, Mapping):
        return {"name": model.get("name"), "version": model.get("version"), **dict(model)}
    card = getattr(model, "card", model)  # LoadedModel -> ModelCard
    return {"name": getattr(card, "name", str(model)), "version": getattr(card, "version", None)}


def mask_summary(
    mask: xr.DataArray | da.Array | np.ndarray,
    *,
    product_id: str | None = None,
    model: Any = None,
    timing: Mapping[str, float] | None = None,
    classes: Mapping[int, str] = CLASSES,
    nodata: int = NODATA,
    scheduler: Any = None,
) -> dict[str, Any]:
    """Summarise a uint8 class mask as a JSON-ready dict (see the module docstring for keys).

    Args:
        mask: ``("y", "x")`` (or ``(1, "y", "x")``) uint8 mask, dask-backed or not.
        product_id: the product's identifier, e.g. the SAFE name.
        model: a ``LoadedModel``, ``ModelCard`` or ``{"name": ..., "version": ...}``.
        timing: seconds per stage, e.g. ``{"read": 1.2, "predict": 30.0, "write": 2.0}``.
        classes: value -> class name.
        nodata: the nodata value.
        scheduler: dask scheduler for the counting.
    """
    hist = class_counts(mask, scheduler=scheduler)
    total = int(hist.sum())
    counts: dict[str, int] = {name: int(hist[v]) for v, name in sorted(classes.items())}
    counts["nodata"] = int(hist[nodata])
    unknown = total - sum(counts.values())
    valid = total - counts["nodata"] - unknown
    counts.update(valid=valid, total=total)
    if unknown:
        counts["unknown"] = unknown
    fractions = fractions_from_counts(hist, classes, nodata=nodata)
    shape = [int(s) for s in mask.shape[-2:]]
    return {
        "product_id": product_id,
        "model": _model_entry(model),
        "fractions": fractions,
        "counts": counts,
        "shape": shape,
        **_geo(mask),
        "timing": dict(timing) if timing else {},
        "s2mask_version": __version__,
    }


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_summary(
    path: str | os.PathLike[str], summary: Mapping[str, Any], *, overwrite: bool = False
) -> Path:
    """Write ``summary`` as indented JSON to ``path``, atomically; return the path.

    numpy numbers, arrays and paths are converted; NaN is refused (strict JSON).

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is false.
        OutputError: the folder is missing or not writable, or the disk is full.
        InvalidParameterError: ``summary`` holds something JSON cannot represent.
    """
    try:
        text = json.dumps(summary, indent=2, default=_json_default, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(
            f"The summary for {path} cannot be written as JSON ({exc}); expected numbers, strings, "
            "lists and dicts. Convert that value (or replace NaN with None) first."
        ) from exc
    return atomic_write_text(path, text, overwrite=overwrite)
