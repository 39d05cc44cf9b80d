"""Blending overlapping window predictions.

Each window's class probabilities are multiplied by a tapered weight (flat in the
centre, a raised-cosine ramp over the ``overlap`` pixels at each edge, never below
``floor``), summed into an accumulator together with the weights, and divided by
the summed weight at the end.  Ramps of neighbouring windows add up to one over
their shared overlap, so seams vanish; the floor keeps image borders, where only
one window reaches, well defined.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from s2mask.errors import InvalidParameterError

__all__ = ["DEFAULT_FLOOR", "taper", "window_weight", "Accumulator", "combine"]

DEFAULT_FLOOR = 1e-3
"""Smallest weight any pixel of a window gets."""


def taper(window: int, overlap: int, *, floor: float = DEFAULT_FLOOR) -> np.ndarray:
    """1-D weights of length ``window``: raised-cosine ramps of ``overlap`` px, flat 1 between.

    Symmetric (``w[i] == w[window - 1 - i]``), in ``[floor, 1]``, never zero.
    """
    if not 0 < floor <= 1:
        raise InvalidParameterError(f"The blend floor is {floor}; expected 0 < floor <= 1 (default 1e-3).")
    if overlap < 0 or 2 * overlap > window:
        raise InvalidParameterError(
            f"The overlap is {overlap} px for a {window} px window; expected 0 <= overlap <= window/2."
        )
    w = np.ones(window, dtype=np.float64)
    if overlap:
        ramp = 0.5 * (1.0 - np.cos(np.pi * (np.arange(overlap) + 0.5) / overlap))
        w[:overlap] = ramp
        w[window - overlap :] = ramp[::-1]
    return np.maximum(w, floor).astype(np.float32)


@lru_cache(maxsize=16)
def window_weight(window: int, overlap: int, floor: float = DEFAULT_FLOOR) -> np.ndarray:
    """2-D weight ``(window, window)``: the outer product of :func:`taper` (read-only, cached)."""
    t = taper(window, overlap, floor=floor)
    w = np.outer(t, t).astype(np.float32)
    w.setflags(write=False)
    return w


@dataclass
class Accumulator:
    """Weighted sums of window probabilities over a rectangle of the (padded) image.

    ``num`` is ``(K, h, w)`` (sum of weight * probability) and ``den`` ``(h, w)`` (sum of
    weight); the rectangle's top-left pixel is ``origin`` in full-image coordinates.
    """

    origin: tuple[int, int]
    num: np.ndarray
    den: np.ndarray

    @classmethod
    def zeros(cls, origin: tuple[int, int], shape: tuple[int, int], num_classes: int) -> Accumulator:
        """An empty accumulator of ``shape`` at ``origin``."""
        return cls(
            (int(origin[0]), int(origin[1])),
            np.zeros((num_classes, *shape), dtype=np.float32),
            np.zeros(shape, dtype=np.float32),
        )

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        """``(y0, y1, x0, x1)`` in full-image coordinates."""
        y0, x0 = self.origin
        return y0, y0 + self.den.shape[0], x0, x0 + self.den.shape[1]

    def add(self, probs: np.ndarray, starts: list[tuple[int, int]], weight: np.ndarray) -> None:
        """Add window probabilities ``probs`` ``(N, K, win, win)`` at global ``starts``."""
        win = weight.shape[0]
        y0, x0 = self.origin
        for p, (y, x) in zip(probs, starts, strict=True):
            sy, sx = slice(y - y0, y - y0 + win), slice(x - x0, x - x0 + win)
            self.num[:, sy, sx] += p * weight
            self.den[sy, sx] += weight

    def add_overlap(self, other: Accumulator) -> None:
        """Add the part of ``other`` that overlaps this accumulator's rectangle."""
        a, b = self.bounds, other.bounds
        y0, y1, x0, x1 = max(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), min(a[3], b[3])
        if y0 >= y1 or x0 >= x1:
            return
        mine = np.s_[y0 - a[0] : y1 - a[0], x0 - a[2] : x1 - a[2]]
        theirs = np.s_[y0 - b[0] : y1 - b[0], x0 - b[2] : x1 - b[2]]
        self.num[(slice(None), *mine)] += other.num[(slice(None), *theirs)]
        self.den[mine] += other.den[theirs]

    def crop(self, y1: int, x1: int) -> Accumulator:
        """This accumulator cut at full-image row ``y1`` and column ``x1`` (drops padding)."""
        h = max(0, min(self.den.shape[0], y1 - self.origin[0]))
        w = max(0, min(self.den.shape[1], x1 - self.origin[1]))
        return Accumulator(self.origin, self.num[:, :h, :w], self.den[:h, :w])

    def cut(self, bounds: tuple[int, int, int, int]) -> Accumulator | None:
        """A copy of the part inside ``bounds`` ``(y0, y1, x0, x1)``; ``None`` if they do not overlap.

        A copy, not a view, so the (larger) accumulator it came from can be freed.
        """
        a = self.bounds
        y0, y1 = max(a[0], bounds[0]), min(a[1], bounds[1])
        x0, x1 = max(a[2], bounds[2]), min(a[3], bounds[3])
        if y0 >= y1 or x0 >= x1:
            return None
        rows, cols = slice(y0 - a[0], y1 - a[0]), slice(x0 - a[2], x1 - a[2])
        return Accumulator((y0, x0), self.num[:, rows, cols].copy(), self.den[rows, cols].copy())

    def result(self) -> np.ndarray:
        """Blended probabilities ``(K, h, w)`` float32; NaN where no window contributed."""
        out = np.full(self.num.shape, np.nan, dtype=np.float32)
        np.divide(self.num, self.den, out=out, where=self.den > 0)
        return out


def combine(parts: list[Accumulator | None], bounds: tuple[int, int, int, int], num_classes: int) -> Accumulator:
    """Sum the overlaps of ``parts`` into a new accumulator covering ``bounds`` (y0, y1, x0, x1)."""
    y0, y1, x0, x1 = bounds
    acc = Accumulator.zeros((y0, x0), (y1 - y0, x1 - x0), num_classes)
    for part in parts:
        if part is not None:
            acc.add_overlap(part)
    return acc
