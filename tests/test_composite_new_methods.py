"""percentile, medoid, geomedian and first: numpy cores against independent references and known answers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2mask.composite.methods import (
    FirstMethod,
    GeomedianMethod,
    MedianMethod,
    MedoidMethod,
    PercentileMethod,
    get_method,
)
from s2mask.errors import InvalidParameterError


def _stack(seed: int, t: int = 7, b: int = 3, h: int = 5, w: int = 6, p_clear: float = 0.6):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (t, b, h, w)).astype(np.float32), rng.random((t, h, w)) < p_clear


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), t=st.integers(1, 9), p=st.floats(0.0, 1.0), q=st.floats(0.0, 100.0))
def test_percentile_equals_nanpercentile(seed, t, p, q):
    values, clear = _stack(seed, t=t, p_clear=p)
    out, extras = PercentileMethod(q).reduce(values, clear)
    masked = np.where(clear[:, None], values, np.nan).astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = np.nanpercentile(masked, q, axis=0).astype(np.float32)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-7, equal_nan=True)
    assert extras == {} and out.dtype == np.float32


def test_percentile_50_is_the_median_and_ends_are_min_and_max():
    values, clear = _stack(5, t=8)
    has = clear.any(axis=0)
    np.testing.assert_array_equal(
        PercentileMethod(50).reduce(values, clear)[0], MedianMethod().reduce(values, clear)[0]
    )
    masked = np.where(clear[:, None], values, np.nan)
    lo, hi = PercentileMethod(0).reduce(values, clear)[0], PercentileMethod(100).reduce(values, clear)[0]
    np.testing.assert_array_equal(lo[:, has], np.nanmin(masked, axis=0)[:, has])
    np.testing.assert_array_equal(hi[:, has], np.nanmax(masked, axis=0)[:, has])


def _medoid_reference(values, clear):
    """Per pixel, in plain loops: the clear observation nearest (float64) to the per-band median."""
    t, _, h, w = values.shape
    src = np.full((h, w), -1)
    for y in range(h):
        for x in range(w):
            idx = [i for i in range(t) if clear[i, y, x]]
            if not idx:
                continue
            obs = values[idx, :, y, x].astype(np.float64)
            med = np.median(obs, axis=0).astype(np.float32).astype(np.float64)
            d = ((obs - med) ** 2).sum(axis=1)
            src[y, x] = idx[int(np.argmin(d))]  # first of equal distances
    return src


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), t=st.integers(1, 8), p=st.floats(0.2, 1.0))
def test_medoid_is_the_real_observation_nearest_the_median(seed, t, p):
    values, clear = _stack(seed, t=t, p_clear=p)
    out, extras = MedoidMethod().reduce(values, clear)
    src = extras["source_index"]
    np.testing.assert_array_equal(src, _medoid_reference(values, clear))
    has = src >= 0
    chosen = np.take_along_axis(values, np.maximum(src, 0)[None, None], axis=0)[0]
    np.testing.assert_array_equal(out[:, has], chosen[:, has])  # every band of one observation, bit for bit
    assert np.isnan(out[:, ~has]).all()


def test_medoid_known_answer_keeps_band_relationships():
    # three observations of two bands: the per-band median (0.2, 0.2) is no observation; (0.1, 0.2) is nearest
    values = np.array([[0.1, 0.2], [0.2, 0.5], [0.3, 0.1]], np.float32).reshape(3, 2, 1, 1)
    clear = np.ones((3, 1, 1), bool)
    out, ex = MedoidMethod().reduce(values, clear)
    assert ex["source_index"].item() == 0 and out[:, 0, 0].tolist() == values[0, :, 0, 0].tolist()
    np.testing.assert_array_equal(MedianMethod().reduce(values, clear)[0][:, 0, 0], np.float32([0.2, 0.2]))


def test_first_takes_the_first_clear_scene_in_rank_order():
    values = np.arange(4, dtype=np.float32).reshape(4, 1, 1, 1)
    clear = np.array([False, True, True, True]).reshape(4, 1, 1)
    method = FirstMethod()
    out, ex = method.reduce(values, clear)
    assert ex["source_index"].item() == 1 and out.item() == 1.0
    _, ex = method.reduce(values, clear, rank=np.array([0, 3, 1, 2]))
    assert ex["source_index"].item() == 2
    _, ex = method.reduce(values, np.zeros((4, 1, 1), bool))
    assert ex["source_index"].item() == -1


def _objective(points: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(((points - y) ** 2).sum(axis=1)).sum())


def _geomedian_reference(points: np.ndarray) -> np.ndarray:
    """An independent float64 minimiser of the sum of distances (scipy), from the coordinate-wise median."""
    from scipy.optimize import minimize

    start = np.median(points, axis=0)
    res = minimize(lambda y: _objective(points, y), start, method="Nelder-Mead",
                   options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 20000, "maxfev": 40000})  # fmt: skip
    return res.x


def test_geomedian_matches_an_independent_minimiser():
    values, clear = _stack(11, t=7, b=3, h=6, w=6, p_clear=0.7)
    out, extras = GeomedianMethod(eps=1e-10, max_iterations=5000).reduce(values, clear)
    assert extras == {}
    n = clear.sum(axis=0)
    checked = 0
    for y, x in zip(*np.nonzero(n >= 3), strict=True):
        pts = values[clear[:, y, x], :, y, x].astype(np.float64)
        ref = _geomedian_reference(pts)
        ours = out[:, y, x].astype(np.float64)
        # ours is at least as good as the reference minimiser, and at the same point
        assert _objective(pts, ours) <= _objective(pts, ref) + 1e-6
        assert np.abs(ours - ref).max() < 1e-4
        checked += 1
    assert checked > 20
    assert np.isnan(out[:, n == 0]).all()


@pytest.mark.parametrize(
    ("points", "expected"),
    [
        ([[0.2, 0.3]] * 4, [0.2, 0.3]),  # identical observations
        ([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], [0.5, 0.5]),  # square: its centre
        ([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]], [0.5, np.sqrt(3) / 6]),  # equilateral: centroid
        ([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 0.1]], [0.0, 0.0]),  # an angle over 120 deg: the vertex
        ([[0.1], [0.9], [0.3], [0.35], [0.7]], [0.35]),  # one band: the median
        ([[0.1, 0.4], [0.3, 0.2]], [0.2, 0.3]),  # two points: every point between them; we give the midpoint
        ([[0.25, 0.5]], [0.25, 0.5]),  # one observation
    ],
)
def test_geomedian_known_answers(points, expected):
    pts = np.asarray(points, np.float32)
    values = pts.reshape(len(pts), pts.shape[1], 1, 1)
    out, _ = GeomedianMethod().reduce(values, np.ones((len(pts), 1, 1), bool))
    np.testing.assert_allclose(out[:, 0, 0], np.asarray(expected, np.float32), atol=2e-6)


def test_geomedian_agrees_with_geomad():
    """geomad's ``nangeomedian_pcm`` (the implementation behind odc-algo's geomedian), where installed."""
    geomad = pytest.importorskip("geomad")
    values, clear = _stack(3, t=8, b=4, h=32, w=32, p_clear=0.7)
    out, _ = GeomedianMethod(eps=1e-9, max_iterations=5000).reduce(values, clear)
    x = np.where(clear[:, None], values, np.nan).astype(np.float32).transpose(2, 3, 1, 0).copy()
    ref = geomad.nangeomedian_pcm(x, eps=1e-7, maxiters=10000, num_threads=1).transpose(2, 0, 1)
    n = clear.sum(axis=0)
    # geomad starts each pixel from its neighbour's answer; with 2 observations the minimiser is not unique
    unique = n >= 3
    assert unique.sum() > 500
    assert np.abs(out[:, unique] - ref[:, unique]).max() < 1e-4
    assert np.array_equal(np.isnan(out), np.isnan(ref))


def test_names_and_parameters():
    assert isinstance(get_method("percentile", percentile=25), PercentileMethod)
    assert get_method("percentile", percentile=25).q == 25
    assert isinstance(get_method("geomedian"), GeomedianMethod)
    assert isinstance(get_method("Medoid"), MedoidMethod)
    assert isinstance(get_method("first"), FirstMethod)
    with pytest.raises(InvalidParameterError, match="--percentile 25"):
        get_method("percentile")
    with pytest.raises(InvalidParameterError, match="0 to 100"):
        get_method("percentile", percentile=120)
    with pytest.raises(InvalidParameterError, match="only to the percentile method"):
        get_method("median", percentile=25)
    with pytest.raises(InvalidParameterError, match="eps > 0"):
        GeomedianMethod(eps=0)
