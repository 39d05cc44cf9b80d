"""Compositing methods as interchangeable strategies (after rio-tiler's mosaic methods).

Each method reduces one block of a time stack to one image.  The numpy core sees

* ``values``: ``(T, B, h, w)`` float32 reflectance of ``T`` scenes,
* ``clear``: ``(T, h, w)`` bool, True where the observation is clear (mask says clear and every
  band is finite),
* ``score``: ``(T, h, w)`` float32 or ``None``, lower is better (cloud + shadow probability),
* ``rank``: ``(T,)`` int, the tie-break order of the scenes (0 is preferred),

and returns ``(B, h, w)`` float32 reflectance with NaN where no observation is clear, plus the
method's extra layers (best-pixel adds ``source_index``, the chosen scene, -1 where none).
Methods are pure functions of their block, so the chunked result equals the whole-array result.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod

import numpy as np

from s2mask.errors import InvalidParameterError

__all__ = [
    "CompositeMethod",
    "MedianMethod",
    "MeanMethod",
    "BestPixelMethod",
    "Method",
    "get_method",
]


class CompositeMethod(ABC):
    """A way to reduce a time stack of clear observations to one image."""

    name: str = ""
    """The name users type (``--method``)."""
    extra_layers: tuple[str, ...] = ()
    """Names of the per-pixel layers the method returns besides reflectance."""
    uses_score: bool = False
    """Whether the method looks at ``score`` (cloud/shadow probability)."""

    @abstractmethod
    def reduce(
        self,
        values: np.ndarray,
        clear: np.ndarray,
        *,
        score: np.ndarray | None = None,
        rank: np.ndarray | None = None,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Reduce ``values`` ``(T, B, h, w)`` over time where ``clear``; see the module docstring."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class MedianMethod(CompositeMethod):
    """Per-band median of the clear observations (the mean of the two middle ones for an even count)."""

    name = "median"

    def reduce(self, values, clear, *, score=None, rank=None):
        masked = np.where(clear[:, None], values, np.float32(np.nan)).astype(np.float32, copy=False)
        masked.sort(axis=0)  # NaN sorts last, so the n clear values come first
        n = clear.sum(axis=0)[None, None]  # (1, 1, h, w)
        lo = np.take_along_axis(masked, np.maximum((n - 1) // 2, 0), axis=0)[0]
        hi = np.take_along_axis(masked, n // 2, axis=0)[0]
        out = np.where(lo == hi, lo, (lo.astype(np.float64) + hi) / 2).astype(np.float32)
        out[:, n[0, 0] == 0] = np.nan
        return out, {}


class MeanMethod(CompositeMethod):
    """Per-band mean of the clear observations (accumulated in float64)."""

    name = "mean"

    def reduce(self, values, clear, *, score=None, rank=None):
        weights = clear[:, None]
        total = np.where(weights, values, 0).sum(axis=0, dtype=np.float64)
        n = clear.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = (total / n).astype(np.float32)
        out[:, n == 0] = np.nan
        return out, {}


class BestPixelMethod(CompositeMethod):
    """All bands of the one clear observation with the lowest ``score``.

    Ties (equal scores, or no scores at all) go to the scene with the lowest ``rank``: closeness to
    a target date when one is given, otherwise the order of the inputs (the first scene wins).
    """

    name = "best-pixel"
    extra_layers = ("source_index",)
    uses_score = True

    def reduce(self, values, clear, *, score=None, rank=None):
        t = values.shape[0]
        order = np.argsort(rank if rank is not None else np.arange(t), kind="stable")
        key = np.zeros(clear.shape, np.float32) if score is None else np.asarray(score, np.float32)
        key = np.where(clear & np.isfinite(key), key, np.float32(np.inf))[order]
        pick = order[np.argmin(key, axis=0)]  # argmin keeps the first (best-ranked) of equal keys
        out = np.take_along_axis(values, pick[None, None], axis=0)[0].astype(np.float32, copy=True)
        none = ~clear.any(axis=0)
        out[:, none] = np.nan
        source = np.where(none, -1, pick).astype(np.int32)
        return out, {"source_index": source}


class Method(enum.Enum):
    """Registry from method name to strategy class."""

    median = MedianMethod
    mean = MeanMethod
    best_pixel = BestPixelMethod


def get_method(method: str | CompositeMethod) -> CompositeMethod:
    """A method instance from its name (``median``, ``mean``, ``best-pixel``) or an instance."""
    if isinstance(method, CompositeMethod):
        return method
    key = str(method).strip().lower().replace("-", "_")
    try:
        return Method[key].value()
    except KeyError:
        names = ", ".join(m.value.name for m in Method)
        raise InvalidParameterError(
            f"Unknown composite method {method!r}; expected one of {names}."
        ) from None
