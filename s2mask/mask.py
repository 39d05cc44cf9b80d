"""The mask: its encoding (one owner, as :mod:`s2mask.bands` owns the bands), ``to_mask`` and its statistics.

The encoding of a uint8 mask -- values, class names, colours, nodata -- is defined here and
nowhere else: the COG writer's colour table, class tags and category names
(:func:`mask_write_options`), the JSON summary, the STAC index and the quick-look legend
(:func:`fractions_from_counts`), and the composite buffer (:data:`NODATA`) all ask this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dask
import dask.array as da
import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from s2mask.errors import InvalidParameterError

__all__ = [
    "CLASSES",
    "CLEAR",
    "CLOUD",
    "COLOURS",
    "NODATA",
    "NODATA_NAME",
    "SHADOW",
    "category_names",
    "class_counts",
    "class_fractions",
    "colormap",
    "fractions_from_counts",
    "mask_description",
    "mask_tags",
    "mask_write_options",
    "to_mask",
]

CLEAR, CLOUD, SHADOW = 0, 1, 2
"""The mask values of the three classes."""

CLASSES: Mapping[int, str] = {CLEAR: "clear", CLOUD: "cloud", SHADOW: "shadow"}
"""Mask value -> class name, in the order of the models' class axis."""

NODATA = 255
"""Mask value for pixels without valid input."""

NODATA_NAME = "nodata"
"""The name of :data:`NODATA` in tags, category names, summaries and legends."""

COLOURS: Mapping[int, tuple[int, int, int, int]] = {
    CLEAR: (46, 139, 87, 255),  # sea green
    CLOUD: (255, 255, 255, 255),  # white
    SHADOW: (90, 90, 90, 255),  # dark grey
    NODATA: (0, 0, 0, 0),  # nodata: transparent
}
"""The colour table of mask COGs (RGBA); values not listed are black."""


def colormap() -> dict[int, tuple[int, int, int, int]]:
    """The colour table of uint8 masks: clear green, cloud white, shadow grey, nodata transparent."""
    return dict(COLOURS)


def category_names(classes: Mapping[int, str] = CLASSES, *, nodata: int = NODATA) -> dict[int, str]:
    """Value -> name of every value a mask holds, nodata included (GDAL category names)."""
    return {**dict(sorted(classes.items())), nodata: NODATA_NAME}


def mask_tags(classes: Mapping[int, str] = CLASSES, *, nodata: int = NODATA) -> dict[str, str]:
    """Dataset tags naming each mask value: ``CLASS_0=clear`` ... ``CLASS_255=nodata``, ``CLASSES=...``."""
    names = category_names(classes, nodata=nodata)
    tags = {f"CLASS_{v}": name for v, name in names.items()}
    tags["CLASSES"] = ", ".join(f"{v}={name}" for v, name in names.items())
    return tags


def mask_description(classes: Mapping[int, str] = CLASSES, *, nodata: int = NODATA) -> str:
    """The mask band's description: ``cloud mask: 0 clear, 1 cloud, 2 shadow, 255 nodata``."""
    return "cloud mask: " + ", ".join(f"{v} {n}" for v, n in category_names(classes, nodata=nodata).items())


def mask_write_options(
    classes: Mapping[int, str] = CLASSES, *, tags: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The :func:`s2mask.io.cog.write_cog` options of a mask COG: every command writes masks with these.

    nodata 255, uint8, the colour table, ``CLASS_*`` tags, a band description, GDAL category
    names (a raster attribute table in ``<mask>.aux.xml``) and ``MODE`` overviews.
    """
    return {
        "nodata": NODATA,
        "dtype": np.uint8,
        "colormap": colormap(),
        "categories": category_names(classes),
        "band_descriptions": [mask_description(classes)],
        "tags": {**mask_tags(classes), **(tags or {})},
        "overview_resampling": "mode",
    }


def _argmax_block(block: np.ndarray, nodata: int) -> np.ndarray:
    nan = np.isnan(block).any(axis=0)
    out = np.argmax(np.nan_to_num(block, nan=-1.0), axis=0).astype(np.uint8)
    out[nan] = nodata
    return out


def to_mask(probs: xr.DataArray, *, nodata: int = NODATA) -> xr.DataArray:
    """Lazy uint8 mask ``("y", "x")``: the most likely class, ``nodata`` where ``probs`` is NaN.

    Keeps the y/x coords and the CRS of ``probs`` and records the class names in
    ``attrs["classes"]`` and the nodata value with ``rio.write_nodata``.
    """
    if "class" not in probs.dims or probs.ndim != 3:
        raise InvalidParameterError(
            f"to_mask got an array with dims {probs.dims}; expected ('class', 'y', 'x') from s2mask.predict."
        )
    if not 0 <= nodata <= 255 or nodata < probs.sizes["class"]:
        raise InvalidParameterError(
            f"nodata is {nodata}; expected a uint8 value >= the number of classes ({probs.sizes['class']})."
        )
    probs = probs.transpose("class", "y", "x")
    data = probs.data if isinstance(probs.data, da.Array) else da.from_array(np.asarray(probs.data))
    data = data.rechunk({0: -1})
    mask = da.map_blocks(_argmax_block, data, nodata, drop_axis=0, dtype=np.uint8)
    coords = {k: v for k, v in probs.coords.items() if "class" not in v.dims}
    out = xr.DataArray(mask, dims=("y", "x"), coords=coords, name="mask")
    out.attrs["classes"] = [str(c) for c in probs["class"].values] if "class" in probs.coords else []
    crs = probs.rio.crs
    if crs is not None:
        out = out.rio.write_crs(crs)
    return out.rio.write_nodata(nodata, encoded=False)


def _bincount(block: np.ndarray) -> np.ndarray:
    return np.bincount(np.asarray(block, dtype=np.uint8).ravel(), minlength=256).astype(np.int64)


def class_counts(mask: xr.DataArray | da.Array | np.ndarray, *, scheduler: Any = None) -> np.ndarray:
    """Histogram of a uint8 mask: 256 counts, value -> number of pixels.

    Streaming: one ``np.bincount`` per dask block, summed; only the histograms are kept.

    Raises:
        InvalidParameterError: the mask is not unsigned 8-bit (or bool).
    """
    data = mask.data if isinstance(mask, xr.DataArray) else mask
    if np.dtype(data.dtype) not in (np.uint8, np.bool_):
        raise InvalidParameterError(
            f"Class counts need a uint8 class mask; got dtype {data.dtype}. "
            "Pass the output of to_mask() (0 clear, 1 cloud, 2 shadow, 255 nodata)."
        )
    if not isinstance(data, da.Array):
        return _bincount(np.asarray(data))
    parts = [dask.delayed(_bincount)(block) for block in data.to_delayed().ravel()]
    total = dask.delayed(lambda hs: np.sum(hs, axis=0))(parts)
    return np.asarray(total.compute(scheduler=scheduler))


def fractions_from_counts(
    counts: np.ndarray, classes: Mapping[int, str] = CLASSES, *, nodata: int = NODATA
) -> dict[str, float | None]:
    """The class fractions every output reports (JSON summary, STAC index, quick-look legend).

    Each class as a fraction of the *valid* pixels (``None`` when none is valid) and
    ``nodata`` as a fraction of *all* pixels (``None`` for an empty mask).
    """
    counts = np.asarray(counts)
    total = int(counts.sum())
    valid = sum(int(counts[v]) for v in classes)  # neither nodata nor an unknown value
    out: dict[str, float | None] = {
        name: (int(counts[v]) / valid if valid else None) for v, name in sorted(classes.items())
    }
    out[NODATA_NAME] = int(counts[nodata]) / total if total else None
    return out


def class_fractions(mask: xr.DataArray, *, nodata: int = NODATA) -> dict[str, float]:
    """Fraction of all pixels in each class and in ``nodata`` (they add up to 1).

    Keys are the class names from ``mask.attrs["classes"]`` (else ``"0"``, ``"1"``, ...)
    and ``"nodata"``.  Computed block by block, so memory stays bounded.
    """
    counts = class_counts(mask)
    total = int(counts.sum())
    names = list(mask.attrs.get("classes") or [])
    values = sorted(set(range(len(names))) | {int(v) for v in np.flatnonzero(counts) if v != nodata})
    frac = {(names[v] if v < len(names) else str(v)): counts[v] / total if total else 0.0 for v in values}
    frac["nodata"] = counts[nodata] / total if total else 0.0
    return {k: float(v) for k, v in frac.items()}
