"""Label values: CloudSEN12 to project classes, and the ignore value.

CloudSEN12 labels are 0 clear, 1 thick cloud, 2 thin cloud, 3 cloud shadow; the
project's are 0 clear, 1 cloud (thick or thin), 2 shadow, 255 ignored.
"""

from __future__ import annotations

import numpy as np

__all__ = ["IGNORE", "CLOUDSEN12_TO_PROJECT", "remap_labels", "remap_cloudsen12", "all_ignored"]

IGNORE = 255
"""Label value that the loss and the metrics skip."""

CLOUDSEN12_TO_PROJECT: dict[int, int] = {0: 0, 1: 1, 2: 1, 3: 2}
"""CloudSEN12 class -> project class; every other value becomes :data:`IGNORE`."""


def remap_labels(label: np.ndarray, mapping: dict[int, int]) -> np.ndarray:
    """Map integer labels through ``mapping``; values not in it (and NaN) become 255 (uint8)."""
    lut = np.full(256, IGNORE, np.uint8)
    for src, dst in mapping.items():
        lut[int(src)] = dst
    a = np.asarray(label)
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a) | (a < 0) | (a > 255) | (a != np.round(a))
        a = np.where(bad, IGNORE, a)
    a = a.astype(np.int64)
    out = np.full(a.shape, IGNORE, np.uint8)
    ok = (a >= 0) & (a <= 255)
    out[ok] = lut[a[ok]]
    return out


def remap_cloudsen12(label: np.ndarray) -> np.ndarray:
    """CloudSEN12 labels (0 clear, 1 thick, 2 thin, 3 shadow) to project labels; others -> 255."""
    return remap_labels(label, CLOUDSEN12_TO_PROJECT)


def all_ignored(label: np.ndarray) -> bool:
    """True when no pixel of a (project) label carries a class: such samples are skipped."""
    return bool(np.all(np.asarray(label) == IGNORE))
