"""Compositing methods as interchangeable strategies (after rio-tiler's mosaic methods).

Each method reduces one block of a time stack to one image.  The numpy core sees

* ``values``: ``(T, B, h, w)`` float32 reflectance of ``T`` scenes,
* ``clear``: ``(T, h, w)`` bool, True where the observation is clear (mask says clear and every
  band is finite),
* ``score``: ``(T, h, w)`` float32 or ``None``, lower is better (cloud + shadow probability),
* ``rank``: ``(T,)`` int, the tie-break order of the scenes (0 is preferred),

and returns ``(B, h, w)`` float32 reflectance with NaN where no observation is clear, plus the
method's extra layers: the methods that pick one real observation (best-pixel, medoid, first) add
``source_index``, the chosen scene, -1 where none.  Methods are pure functions of their block, so the
chunked result equals the whole-array result.

Which methods there are: per-band statistics (``median``, ``mean``, ``percentile``), one whole
observation (``best-pixel`` by score, ``medoid`` closest to the median, ``first`` in scene order),
and the multivariate ``geomedian`` (Weiszfeld with the Vardi-Zhang step, as hdstats/geomad).
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
    "PercentileMethod",
    "MedoidMethod",
    "GeomedianMethod",
    "FirstMethod",
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


def _sorted_clear(values: np.ndarray, clear: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``values`` sorted over time with cloudy observations as NaN (last), and the clear count ``(1, 1, h, w)``."""
    masked = np.where(clear[:, None], values, np.float32(np.nan)).astype(np.float32, copy=False)
    masked.sort(axis=0)  # NaN sorts last, so the n clear values come first
    return masked, clear.sum(axis=0)[None, None]


def _median(values: np.ndarray, clear: np.ndarray) -> np.ndarray:
    """Per-band median of the clear observations, NaN where there is none."""
    masked, n = _sorted_clear(values, clear)
    lo = np.take_along_axis(masked, np.maximum((n - 1) // 2, 0), axis=0)[0]
    hi = np.take_along_axis(masked, n // 2, axis=0)[0]
    out = np.where(lo == hi, lo, (lo.astype(np.float64) + hi) / 2).astype(np.float32)
    out[:, n[0, 0] == 0] = np.nan
    return out


def _pick(values: np.ndarray, clear: np.ndarray, key: np.ndarray, rank: np.ndarray | None):
    """The clear observation with the lowest ``key`` (ties: lowest ``rank``): reflectance and ``source_index``."""
    t = values.shape[0]
    order = np.argsort(rank if rank is not None else np.arange(t), kind="stable")
    key = np.where(clear & np.isfinite(key), key, np.inf)[order]
    pick = order[np.argmin(key, axis=0)]  # argmin keeps the first (best-ranked) of equal keys
    out = np.take_along_axis(values, pick[None, None], axis=0)[0].astype(np.float32, copy=True)
    none = ~clear.any(axis=0)
    out[:, none] = np.nan
    return out, {"source_index": np.where(none, -1, pick).astype(np.int32)}


class MedianMethod(CompositeMethod):
    """Per-band median of the clear observations (the mean of the two middle ones for an even count)."""

    name = "median"

    def reduce(self, values, clear, *, score=None, rank=None):
        return _median(values, clear), {}


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
        key = np.zeros(clear.shape, np.float32) if score is None else np.asarray(score, np.float32)
        return _pick(values, clear, key, rank)


class PercentileMethod(CompositeMethod):
    """Per-band ``q``-th percentile of the clear observations, interpolated linearly (numpy's default).

    ``q=50`` is the median; low ``q`` (e.g. 25) gives a dark-biased composite that also sheds the
    haze and cloud edges a mask missed.
    """

    name = "percentile"

    def __init__(self, q: float) -> None:
        q = float(q)
        if not 0.0 <= q <= 100.0:
            raise InvalidParameterError(
                f"The percentile is {q:g}; expected a number from 0 to 100 (e.g. --percentile 25)."
            )
        self.q = q

    def reduce(self, values, clear, *, score=None, rank=None):
        masked, n = _sorted_clear(values, clear)
        pos = np.maximum(n - 1, 0) * (self.q / 100.0)  # fractional index among the n clear values
        lo = np.floor(pos).astype(np.intp)
        frac = pos - lo
        a = np.take_along_axis(masked, lo, axis=0)[0].astype(np.float64)
        b = np.take_along_axis(masked, np.minimum(lo + 1, np.maximum(n - 1, 0)), axis=0)[0]
        out = np.where(frac[0] == 0, a, a + (b - a) * frac[0]).astype(np.float32)
        out[:, n[0, 0] == 0] = np.nan
        return out, {}

    def __repr__(self) -> str:
        return f"PercentileMethod(q={self.q:g})"


class MedoidMethod(CompositeMethod):
    """All bands of the clear observation closest (Euclidean, over bands) to the per-band median.

    Unlike the median, every output pixel is one real observation, so band ratios (indices) stay
    physically consistent.  Ties go to the lowest ``rank`` (the first scene in scene order).
    """

    name = "medoid"
    extra_layers = ("source_index",)

    def reduce(self, values, clear, *, score=None, rank=None):
        median = _median(values, clear)
        distance = np.sum((values.astype(np.float64) - median[None]) ** 2, axis=1)  # (T, h, w)
        return _pick(values, clear, distance, rank)


class FirstMethod(CompositeMethod):
    """All bands of the first clear observation in scene order (lowest ``rank``).

    The scene order is the composite's ``order``: input order, least cloudy first, oldest or newest
    first, or closest to a target date.
    """

    name = "first"
    extra_layers = ("source_index",)

    def reduce(self, values, clear, *, score=None, rank=None):
        return _pick(values, clear, np.zeros(clear.shape, np.float32), rank)


class GeomedianMethod(CompositeMethod):
    """The multivariate geometric median of the clear observations (all bands together).

    The point minimising the sum of Euclidean distances to the observations, found per pixel by
    Weiszfeld's iteration with the Vardi-Zhang step (which stays correct when the estimate lands on
    an observation), as hdstats / geomad (``nangeomedian_pcm``, behind odc-algo's geomedian) do.
    Where one observation is itself the median (Kuhn's condition, tested first) it is returned
    exactly, since Weiszfeld only creeps towards such a point.  Otherwise it starts from the mean,
    iterates in float64, and stops per pixel when a step moves less than ``eps`` (reflectance
    units) or after ``max_iterations``.  Two observations give their midpoint (every point between
    them is a minimiser).  Every pixel is independent of its neighbours (geomad starts each pixel
    from its neighbour's answer), so the chunked result equals the whole-array result.
    """

    name = "geomedian"

    def __init__(self, eps: float = 1e-6, max_iterations: int = 500) -> None:
        if not eps > 0 or int(max_iterations) < 1:
            raise InvalidParameterError(
                f"geomedian eps={eps} and max_iterations={max_iterations}; expected eps > 0 and at least 1 iteration."
            )
        self.eps, self.max_iterations = float(eps), int(max_iterations)

    def reduce(self, values, clear, *, score=None, rank=None):
        t, b, h, w = values.shape
        flat, ok = values.reshape(t, b, h * w), clear.reshape(t, h * w)
        out = np.empty((b, h * w), np.float32)
        for s in range(0, h * w, _SLAB):  # float64 work arrays stay a few tens of MB
            out[:, s : s + _SLAB] = self._solve(flat[:, :, s : s + _SLAB], ok[:, s : s + _SLAB])
        out = out.reshape(b, h, w)
        out[:, ~clear.any(axis=0)] = np.nan
        return out, {}

    def _solve(self, values: np.ndarray, ok: np.ndarray) -> np.ndarray:
        """``(T, B, P)`` observations, ``(T, P)`` clear -> ``(B, P)`` geometric medians (float64)."""
        x = np.where(ok[:, None], values, 0).astype(np.float64)
        n = ok.sum(axis=0)
        y = x.sum(axis=0) / np.maximum(n, 1)  # start from the mean
        solved = _vertex_medians(x, ok, y)  # where an observation is the answer, take it exactly
        idx = np.flatnonzero((n > 2) & ~solved)  # one observation is its own median, two: the midpoint
        xa, oka, ya = x[:, :, idx], ok[:, idx], y[:, idx]
        for _ in range(self.max_iterations):
            if idx.size == 0:
                break
            step = _weiszfeld_step(xa, oka, ya)
            going = np.sqrt(((step - ya) ** 2).sum(axis=0)) >= self.eps
            y[:, idx] = step
            if going.all():
                ya = step
                continue
            idx, xa, oka, ya = idx[going], xa[:, :, going], oka[:, going], step[:, going]
        return y

    def __repr__(self) -> str:
        return f"GeomedianMethod(eps={self.eps:g}, max_iterations={self.max_iterations})"


_SLAB = 1 << 18
"""Pixels solved together by the geometric median."""


def _vertex_medians(x: np.ndarray, ok: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Set ``y`` to observation ``k`` where it is the geometric median; return where that happened.

    Observation ``k`` (with ``m`` copies) is the minimiser iff the unit vectors from it to the other
    observations sum to length <= ``m`` (Kuhn's optimality condition).  Weiszfeld's iteration only
    creeps towards such an answer, so it is tested directly (pixels with 3 or more observations).
    """
    n = ok.sum(axis=0)
    solved = np.zeros(n.shape, bool)
    for k in range(x.shape[0]):
        live = ok[k] & (n > 2) & ~solved
        if not live.any():
            continue
        diff = x[:, :, live] - x[k][None, :, live]  # (T, B, p)
        d = np.sqrt((diff**2).sum(axis=1))  # (T, p)
        other = ok[:, live] & (d > 0)
        units = (diff / np.where(other, d, 1.0)[:, None] * other[:, None]).sum(axis=0)  # (B, p)
        copies = (ok[:, live] & (d == 0)).sum(axis=0)
        here = np.sqrt((units**2).sum(axis=0)) <= copies
        cols = np.flatnonzero(live)[here]
        y[:, cols] = x[k][:, cols]
        solved[cols] = True
    return solved


def _weiszfeld_step(x: np.ndarray, ok: np.ndarray, y: np.ndarray) -> np.ndarray:
    """One Vardi-Zhang step for ``P`` pixels: ``x`` ``(T, B, P)``, ``ok`` ``(T, P)``, ``y`` ``(B, P)``."""
    d = np.sqrt(((x - y) ** 2).sum(axis=1))  # (T, P)
    at = ok & (d == 0)  # observations the estimate sits on
    inv = np.where(ok & ~at, 1.0 / np.where(d > 0, d, 1.0), 0.0)
    total = inv.sum(axis=0)  # (P,)
    has = total > 0
    safe = np.where(has, total, 1.0)
    t = np.einsum("tp,tbp->bp", inv, x) / safe  # weighted mean of the other observations
    eta = at.sum(axis=0)
    if not eta.any():
        return np.where(has, t, y)
    r = safe * np.sqrt(((t - y) ** 2).sum(axis=0))  # |sum of unit vectors towards the observations|
    gamma = np.where(eta > 0, np.minimum(1.0, eta / np.where(r > 0, r, np.inf)), 0.0)
    return np.where(has, (1.0 - gamma) * t + gamma * y, y)  # every observation at y: y is the answer


class Method(enum.Enum):
    """Registry from method name to strategy class."""

    median = MedianMethod
    mean = MeanMethod
    best_pixel = BestPixelMethod
    percentile = PercentileMethod
    medoid = MedoidMethod
    geomedian = GeomedianMethod
    first = FirstMethod


def get_method(method: str | CompositeMethod, *, percentile: float | None = None) -> CompositeMethod:
    """A method instance from its name (``median``, ``percentile``, ``geomedian``, ...) or an instance.

    ``percentile`` is the ``q`` of ``percentile`` (0-100) and is refused with any other method.
    """
    if isinstance(method, CompositeMethod):
        if percentile is not None and not isinstance(method, PercentileMethod):
            raise InvalidParameterError(
                f"A percentile ({percentile:g}) was given with the method {method!r}; it applies only to "
                "method='percentile'. Drop it or choose percentile."
            )
        return method
    key = str(method).strip().lower().replace("-", "_")
    if key not in Method.__members__:
        names = ", ".join(m.value.name for m in Method)
        raise InvalidParameterError(f"Unknown composite method {method!r}; expected one of {names}.")
    if key == "percentile":
        if percentile is None:
            raise InvalidParameterError(
                "The percentile method needs q: give percentile=25 (CLI: --percentile 25), from 0 to 100."
            )
        return PercentileMethod(percentile)
    if percentile is not None:
        raise InvalidParameterError(
            f"A percentile ({percentile:g}) was given with method {method!r}; it applies only to the "
            "percentile method. Use --method percentile or drop --percentile."
        )
    return Method[key].value()
