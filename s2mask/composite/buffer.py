"""Dilating cloud and shadow by N pixels before compositing.

Cloud edges and thin shadow fringes are where masks miss most, so compositing usually drops
a margin around every cloud and shadow.  ``dilate_mask`` grows classes 1 (cloud) and 2 (shadow)
by a disk of radius ``buffer`` pixels into clear pixels; nodata (255) stays nodata and is not
grown.  The numpy core ``dilate_mask_block`` is exact and pure numpy (a disk is the union of
horizontal runs, each a running maximum from a cumulative sum); the dask shell runs it per block
with ``map_overlap(depth=buffer)`` so the chunked result equals the whole-array result.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr

from s2mask.errors import InvalidParameterError
from s2mask.mask import CLEAR, CLOUD, NODATA, SHADOW

__all__ = ["CLEAR", "CLOUD", "SHADOW", "NODATA", "disk_offsets", "dilate_mask_block", "dilate_mask"]


def disk_offsets(radius: int) -> list[tuple[int, int]]:
    """``(dy, half_width)`` pairs: the disk of ``radius`` is the union of rows ``dy`` of ``2*half_width+1``."""
    return [(dy, int(np.floor(np.sqrt(radius * radius - dy * dy)))) for dy in range(-radius, radius + 1)]


def _grow(flag: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of 2-D ``flag`` by a disk of ``radius`` (outside the array counts as False)."""
    h, w = flag.shape
    padded = np.zeros((h, w + 2 * radius + 1), np.int32)
    padded[:, radius + 1 : radius + 1 + w] = flag
    csum = np.cumsum(padded, axis=1)  # csum[:, j] = sum of flag[:, : j - radius]
    out = np.zeros((h, w), bool)
    runs: dict[int, np.ndarray] = {}
    for dy, half in disk_offsets(radius):
        if abs(dy) >= h:
            continue
        if half not in runs:  # run[:, x] = any(flag[:, x - half : x + half + 1])
            cols = np.arange(w) + radius + 1
            runs[half] = (csum[:, cols + half] - csum[:, cols - half - 1]) > 0
        run = runs[half]
        if dy >= 0:
            out[dy:] |= run[: h - dy] if dy else run
        else:
            out[:dy] |= run[-dy:]
    return out


def dilate_mask_block(mask: np.ndarray, buffer: int) -> np.ndarray:
    """Grow cloud and shadow of a uint8 ``(h, w)`` mask by ``buffer`` pixels (numpy, exact).

    A clear pixel within ``buffer`` pixels (Euclidean) of a cloud becomes cloud; otherwise, if it is
    within ``buffer`` of a shadow, it becomes shadow.  Cloud, shadow and nodata pixels keep their class.
    """
    mask = np.asarray(mask)
    if buffer <= 0:
        return mask
    out = mask.copy()
    clear = mask == CLEAR
    near_shadow = _grow(mask == SHADOW, buffer)
    near_cloud = _grow(mask == CLOUD, buffer)
    out[clear & near_shadow] = SHADOW
    out[clear & near_cloud] = CLOUD
    return out


def dilate_mask(mask: xr.DataArray, buffer: int) -> xr.DataArray:
    """Lazily grow cloud and shadow of a ``(y, x)`` uint8 mask by ``buffer`` pixels.

    Each output block reads its block plus a ``buffer``-pixel halo; with ``buffer == 0`` the mask is
    returned unchanged.  Works on numpy- and dask-backed masks alike.
    """
    buffer = int(buffer)
    if buffer < 0:
        raise InvalidParameterError(
            f"The cloud/shadow buffer is {buffer} pixels; expected 0 or more (0 disables dilation)."
        )
    if buffer == 0:
        return mask
    data = mask.data
    if isinstance(data, da.Array):
        # halos may not be wider than a chunk: make chunks at least the buffer
        small = min(min(c) for c in data.chunks)
        if small < buffer:
            data = data.rechunk(tuple(max(buffer, max(c)) for c in data.chunks))
        grown = data.map_overlap(
            dilate_mask_block, depth=buffer, boundary="none", dtype=data.dtype, buffer=buffer
        )
    else:
        grown = dilate_mask_block(data, buffer)
    return mask.copy(data=grown)
