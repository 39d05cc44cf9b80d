"""Geometric augmentation applied identically to an image and its label."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Augment", "random_crop", "center_crop", "augment"]


@dataclass(frozen=True)
class Augment:
    """Which augmentations to draw."""

    flips: bool = True
    """Random horizontal and vertical flips."""
    rotations: bool = True
    """Random rotations by multiples of 90 degrees."""


def random_crop(x: np.ndarray, y: np.ndarray, size: int, rng: np.random.Generator):
    """A random ``size`` x ``size`` crop of ``x`` (C, H, W) and ``y`` (H, W); smaller inputs are padded."""
    x, y = _pad(x, y, size)
    h, w = y.shape
    r, c = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return x[:, r : r + size, c : c + size], y[r : r + size, c : c + size]


def center_crop(x: np.ndarray, y: np.ndarray, size: int):
    """The central ``size`` x ``size`` crop (padded with 0 / 255 when smaller)."""
    x, y = _pad(x, y, size)
    h, w = y.shape
    r, c = (h - size) // 2, (w - size) // 2
    return x[:, r : r + size, c : c + size], y[r : r + size, c : c + size]


def _pad(x: np.ndarray, y: np.ndarray, size: int):
    h, w = y.shape
    ph, pw = max(0, size - h), max(0, size - w)
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, ph), (0, pw)))
        y = np.pad(y, ((0, ph), (0, pw)), constant_values=255)
    return x, y


def augment(x: np.ndarray, y: np.ndarray, aug: Augment, rng: np.random.Generator):
    """Flip and rotate ``x`` (C, H, W) and ``y`` (H, W) together; returns contiguous copies."""
    if aug.flips:
        if rng.random() < 0.5:
            x, y = x[:, :, ::-1], y[:, ::-1]
        if rng.random() < 0.5:
            x, y = x[:, ::-1, :], y[::-1, :]
    if aug.rotations:
        k = int(rng.integers(4))
        x, y = np.rot90(x, k, axes=(1, 2)), np.rot90(y, k)
    return np.ascontiguousarray(x), np.ascontiguousarray(y)
