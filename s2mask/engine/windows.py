"""Pure geometry of the window grid.

Windows lie on a grid anchored to the origin of the *full* image: along each axis
they start at ``0, stride, 2*stride, ...`` with ``stride = window - overlap``, and
the last window is shifted back so that it ends exactly at the image edge.  An
axis shorter than one window gets a single window at 0; the engine pads that axis
by reflection up to the window size and crops the result.  Because the grid
depends only on the full image shape, any part of the image (a dask block, a
region) sees exactly the same windows, which is what makes the engine's result
independent of chunking.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from s2mask.errors import InvalidParameterError

__all__ = ["WindowGrid", "axis_starts", "resolve_window"]

DEFAULT_WINDOW = 256
"""Window size used when neither the caller nor the model card gives one."""


def resolve_window(
    window: int | None, overlap: int | None, *, default_window: int | None = None
) -> tuple[int, int]:
    """Fill in defaults and check a window/overlap pair.

    ``window`` defaults to ``default_window`` (the model card's ``window_size``) or
    256; ``overlap`` defaults to ``window // 8``.  The overlap must be smaller than
    half a window so that every window keeps a centre no neighbour tapers over.
    """
    win = int(window if window is not None else (default_window or DEFAULT_WINDOW))
    if win < 2:
        raise InvalidParameterError(
            f"The window size is {win} px; expected at least 2 px (typically 256). Pass a larger window."
        )
    ovl = int(overlap if overlap is not None else win // 8)
    if ovl < 0 or 2 * ovl >= win:
        raise InvalidParameterError(
            f"The overlap is {ovl} px for a {win} px window; expected 0 <= overlap < window/2 "
            f"(= {win / 2:g}). Pass a smaller overlap (default window // 8 = {win // 8})."
        )
    return win, ovl


def axis_starts(length: int, window: int, stride: int) -> np.ndarray:
    """Start offsets of the windows along one axis of ``length`` pixels.

    ``0, stride, 2*stride, ...`` while the window fits, then one last window ending
    at ``length``.  When ``length <= window`` there is a single window at 0.
    """
    if length <= 0:
        raise InvalidParameterError(f"The image axis has {length} px; expected at least 1 px.")
    if stride <= 0:
        raise InvalidParameterError(f"The window stride is {stride}; expected a positive stride.")
    last = length - window
    if last <= 0:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, last, stride, dtype=np.int64)
    return np.append(starts, last)


@dataclass(frozen=True)
class WindowGrid:
    """The windows covering a full image of ``height`` x ``width`` pixels."""

    height: int
    """Full image height in pixels."""
    width: int
    """Full image width in pixels."""
    window: int
    """Square window side in pixels."""
    overlap: int
    """Overlap between neighbouring windows in pixels (< window / 2)."""

    def __post_init__(self) -> None:
        resolve_window(self.window, self.overlap)
        if self.height < 1 or self.width < 1:
            raise InvalidParameterError(
                f"The image is {self.height} x {self.width} px; expected at least 1 x 1 px."
            )

    @property
    def stride(self) -> int:
        """Distance between the starts of neighbouring windows."""
        return self.window - self.overlap

    @property
    def padded_shape(self) -> tuple[int, int]:
        """Image shape after reflection padding of axes shorter than one window."""
        return max(self.height, self.window), max(self.width, self.window)

    @property
    def starts_y(self) -> np.ndarray:
        """Row offsets of the windows."""
        return axis_starts(self.height, self.window, self.stride)

    @property
    def starts_x(self) -> np.ndarray:
        """Column offsets of the windows."""
        return axis_starts(self.width, self.window, self.stride)

    def __len__(self) -> int:
        return len(self.starts_y) * len(self.starts_x)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for y in self.starts_y:
            for x in self.starts_x:
                yield int(y), int(x)

    def starting_in(self, y0: int, y1: int, x0: int, x1: int) -> list[tuple[int, int]]:
        """Windows whose top-left corner lies in rows ``[y0, y1)`` and columns ``[x0, x1)``.

        Assigning each window to the block holding its start gives every window to
        exactly one block of any partition of the image.
        """
        ys = [int(s) for s in self.starts_y if y0 <= s < y1]
        xs = [int(s) for s in self.starts_x if x0 <= s < x1]
        return [(y, x) for y in ys for x in xs]

    def touching(self, y0: int, y1: int, x0: int, x1: int) -> list[tuple[int, int]]:
        """Windows that cover at least one pixel of rows ``[y0, y1)`` and columns ``[x0, x1)``."""
        w = self.window
        ys = [int(s) for s in self.starts_y if s < y1 and s + w > y0]
        xs = [int(s) for s in self.starts_x if s < x1 and s + w > x0]
        return [(y, x) for y in ys for x in xs]

    def extent(self, starts: list[tuple[int, int]]) -> tuple[int, int, int, int] | None:
        """Bounding box ``(y0, y1, x0, x1)`` of ``starts`` in padded image coordinates, or None."""
        if not starts:
            return None
        ys = [s[0] for s in starts]
        xs = [s[1] for s in starts]
        return min(ys), max(ys) + self.window, min(xs), max(xs) + self.window
