"""Geometric augmentation applied identically to an image and its label.

A label is either hard, ``(H, W)`` uint8 classes with 255 ignored, or soft, ``(K, H, W)``
float32 class probabilities with all-zero columns ignored; every function here keeps
the kind it was given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Augment", "random_crop", "center_crop", "augment", "nodata_edge", "to_soft"]


@dataclass(frozen=True)
class Augment:
    """Which augmentations to draw."""

    flips: bool = True
    """Random horizontal and vertical flips."""
    rotations: bool = True
    """Random rotations by multiples of 90 degrees."""
    nodata: float = 0.0
    """Probability that a sample gets a nodata corner or swath edge (NaN, label ignored)."""
    missing_bands: float = 0.0
    """Probability that bands some products lack (red edge, B12) are replaced by the
    approximation inference uses for them (:func:`training.real_scenes.approximate_bands`)."""


def random_crop(x: np.ndarray, y: np.ndarray, size: int, rng: np.random.Generator):
    """A random ``size`` x ``size`` crop of ``x`` (C, H, W) and ``y`` (H, W); smaller inputs are padded."""
    x, y = _pad(x, y, size)
    h, w = y.shape[-2:]
    r, c = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return x[:, r : r + size, c : c + size], y[..., r : r + size, c : c + size]


def center_crop(x: np.ndarray, y: np.ndarray, size: int):
    """The central ``size`` x ``size`` crop (padded with 0 / 255 when smaller)."""
    x, y = _pad(x, y, size)
    h, w = y.shape[-2:]
    r, c = (h - size) // 2, (w - size) // 2
    return x[:, r : r + size, c : c + size], y[..., r : r + size, c : c + size]


def _pad(x: np.ndarray, y: np.ndarray, size: int):
    h, w = y.shape[-2:]
    ph, pw = max(0, size - h), max(0, size - w)
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, ph), (0, pw)), constant_values=np.nan)
        if y.ndim == 3:
            y = np.pad(y, ((0, 0), (0, ph), (0, pw)))
        else:
            y = np.pad(y, ((0, ph), (0, pw)), constant_values=255)
    return x, y


MISSING_BAND_SETS = (("B05", "B06", "B07"), ("B05", "B07", "B12"), ("B12",))
"""Bands real 4-, 6- and 10-band products lack (ukis-csmask's 6 bands; B02-B04,B06,B08,B11 chips)."""


def approximate_missing(x: np.ndarray, bands: tuple[str, ...], rng: np.random.Generator) -> np.ndarray:
    """Replace one of :data:`MISSING_BAND_SETS` (those in ``bands``) by its approximation."""
    from training.real_scenes import approximate_bands

    sets = [s for s in MISSING_BAND_SETS if set(s) <= set(bands)]
    if not sets:
        return x
    drop = sets[int(rng.integers(len(sets)))]
    have = {b: x[i] for i, b in enumerate(bands) if b not in drop}
    out, _ = approximate_bands(have, bands)
    return out


def augment(
    x: np.ndarray,
    y: np.ndarray,
    aug: Augment,
    rng: np.random.Generator,
    bands: tuple[str, ...] | None = None,
):
    """Flip and rotate ``x`` (C, H, W) and ``y`` (H, W) together; returns contiguous copies."""
    if aug.flips:
        if rng.random() < 0.5:
            x, y = x[:, :, ::-1], y[..., ::-1]
        if rng.random() < 0.5:
            x, y = x[:, ::-1, :], y[..., ::-1, :]
    if aug.rotations:
        k = int(rng.integers(4))
        x, y = np.rot90(x, k, axes=(1, 2)), np.rot90(y, k, axes=(-2, -1))
    if aug.nodata and rng.random() < aug.nodata:
        x, y = nodata_edge(x, y, rng)
    if bands and aug.missing_bands and rng.random() < aug.missing_bands:
        x = approximate_missing(np.asarray(x, np.float32), tuple(bands), rng)
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def nodata_edge(x: np.ndarray, y: np.ndarray, rng: np.random.Generator):
    """Blank a swath edge (a half-plane at a random angle) or a corner: NaN pixels, ignored labels.

    Real products have both (the edge of the swath, the tile's corner outside it);
    the model has to see filled nodata beside clear ground and learn that it is not shadow.
    """
    h, w = x.shape[-2:]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    d = np.cos(angle) * (xx - w / 2) + np.sin(angle) * (yy - h / 2)
    cut = rng.uniform(0.1, 0.45) * min(h, w) if rng.random() < 0.5 else rng.uniform(0.4, 0.7) * min(h, w)
    blank = d > (max(h, w) / 2 - cut) * (1.0 if rng.random() < 0.5 else 0.7)
    if blank.all() or not blank.any():
        return x, y
    x, y = np.array(x, dtype=np.float32), np.array(y)
    x[:, blank] = np.nan
    if y.ndim == 3:
        y[:, blank] = 0.0
    else:
        y[blank] = 255
    return x, y


def to_soft(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Hard labels ``(H, W)`` (255 ignored) as one-hot ``(K, H, W)`` float32 (zeros where ignored)."""
    if y.ndim == 3:
        return y.astype(np.float32, copy=False)
    out = np.zeros((num_classes,) + y.shape, np.float32)
    for k in range(num_classes):
        out[k][y == k] = 1.0
    return out
