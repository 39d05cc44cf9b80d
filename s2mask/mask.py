"""From class probabilities to a uint8 mask, and mask statistics."""

from __future__ import annotations

import dask.array as da
import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from s2mask.errors import InvalidParameterError

__all__ = ["NODATA", "to_mask", "class_fractions"]

NODATA = 255
"""Mask value for pixels without valid input."""


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
    counts = np.bincount(np.asarray(block, dtype=np.uint8).ravel(), minlength=256)
    return counts.reshape(1, 1, 256)


def class_fractions(mask: xr.DataArray, *, nodata: int = NODATA) -> dict[str, float]:
    """Fraction of all pixels in each class and in ``nodata`` (they add up to 1).

    Keys are the class names from ``mask.attrs["classes"]`` (else ``"0"``, ``"1"``, ...)
    and ``"nodata"``.  Computed block by block, so memory stays bounded.
    """
    data = mask.data if isinstance(mask.data, da.Array) else da.from_array(np.asarray(mask.data))
    per_block = da.map_blocks(_bincount, data, new_axis=2, chunks=(1, 1, 256), dtype=np.int64)
    counts = per_block.sum(axis=(0, 1)).compute()
    total = int(counts.sum())
    names = list(mask.attrs.get("classes") or [])
    values = sorted(set(range(len(names))) | {int(v) for v in np.flatnonzero(counts) if v != nodata})
    frac = {(names[v] if v < len(names) else str(v)): counts[v] / total if total else 0.0 for v in values}
    frac["nodata"] = counts[nodata] / total if total else 0.0
    return {k: float(v) for k, v in frac.items()}
