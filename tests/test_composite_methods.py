"""Composite methods: the numpy cores against plain numpy references."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2mask.composite.methods import (
    BestPixelMethod,
    CompositeMethod,
    MeanMethod,
    MedianMethod,
    Method,
    get_method,
)
from s2mask.errors import InvalidParameterError


def _stack(seed: int, t: int = 7, b: int = 3, h: int = 5, w: int = 6, p_clear: float = 0.5):
    rng = np.random.default_rng(seed)
    values = rng.uniform(0, 1, (t, b, h, w)).astype(np.float32)
    clear = rng.random((t, h, w)) < p_clear
    return values, clear


def _nan_reference(fn, values, clear):
    masked = np.where(clear[:, None], values, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices
        return fn(masked.astype(np.float64), axis=0)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), t=st.integers(1, 9), p=st.floats(0.0, 1.0))
def test_median_equals_nanmedian(seed, t, p):
    values, clear = _stack(seed, t=t, p_clear=p)
    out, extras = MedianMethod().reduce(values, clear)
    ref = _nan_reference(np.nanmedian, values, clear).astype(np.float32)
    np.testing.assert_allclose(out, ref, rtol=1e-6, equal_nan=True)
    assert extras == {}
    assert out.dtype == np.float32 and out.shape == values.shape[1:]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), t=st.integers(1, 9), p=st.floats(0.0, 1.0))
def test_mean_equals_nanmean(seed, t, p):
    values, clear = _stack(seed, t=t, p_clear=p)
    out, _ = MeanMethod().reduce(values, clear)
    ref = _nan_reference(np.nanmean, values, clear).astype(np.float32)
    np.testing.assert_allclose(out, ref, rtol=1e-6, equal_nan=True)


def test_median_of_even_count_is_mean_of_middle_two():
    values = np.array([1.0, 4.0, 2.0, 9.0], np.float32).reshape(4, 1, 1, 1)
    clear = np.array([True, True, True, False]).reshape(4, 1, 1)
    assert MedianMethod().reduce(values, clear)[0].item() == 2.0  # 1, 2, 4 -> 2
    clear[3] = True
    assert MedianMethod().reduce(values, clear)[0].item() == 3.0  # 1, 2, 4, 9 -> 3


def test_repeated_clear_value_is_reproduced_exactly():
    v = np.float32(0.123456789)
    values = np.full((5, 2, 1, 1), v, np.float32)
    values[1] = 0.9  # a cloudy observation
    clear = np.array([True, False, True, True, True]).reshape(5, 1, 1)
    for method in (MedianMethod(), MeanMethod(), BestPixelMethod()):
        assert (method.reduce(values, clear)[0] == v).all(), method


def test_best_pixel_takes_lowest_score_among_clear():
    values, clear = _stack(3, t=6)
    score = np.random.default_rng(4).random(clear.shape).astype(np.float32)
    out, extras = BestPixelMethod().reduce(values, clear, score=score)
    src = extras["source_index"]
    masked = np.where(clear, score, np.inf)
    any_clear = clear.any(axis=0)
    np.testing.assert_array_equal(src[any_clear], np.argmin(masked, axis=0)[any_clear])
    assert (src[~any_clear] == -1).all()
    pick = np.take_along_axis(values, np.maximum(src, 0)[None, None], axis=0)[0]
    np.testing.assert_array_equal(out[:, any_clear], pick[:, any_clear])
    assert np.isnan(out[:, ~any_clear]).all()


def test_best_pixel_ties_go_to_lowest_rank():
    values = np.arange(4, dtype=np.float32).reshape(4, 1, 1, 1)
    clear = np.array([False, True, True, True]).reshape(4, 1, 1)
    method = BestPixelMethod()
    _, ex = method.reduce(values, clear)  # no score, no rank: the first clear scene
    assert ex["source_index"].item() == 1
    _, ex = method.reduce(values, clear, rank=np.array([0, 3, 1, 2]))
    assert ex["source_index"].item() == 2
    score = np.array([0.0, 0.2, 0.5, 0.2], np.float32).reshape(4, 1, 1)  # scene 0 is best but not clear
    _, ex = method.reduce(values, clear, score=score, rank=np.array([0, 3, 1, 2]))
    assert ex["source_index"].item() == 3  # 1 and 3 tie at 0.2; 3 ranks before 1


def test_registry_and_names():
    assert isinstance(get_method("median"), MedianMethod)
    assert isinstance(get_method("best-pixel"), BestPixelMethod)
    assert isinstance(get_method("Best_Pixel"), BestPixelMethod)
    assert isinstance(get_method("mean"), MeanMethod)
    custom = MeanMethod()
    assert get_method(custom) is custom
    assert {m.value.name for m in Method} == {
        "median", "mean", "best-pixel", "percentile", "medoid", "geomedian", "first",
    }  # fmt: skip
    assert all(issubclass(m.value, CompositeMethod) for m in Method)
    with pytest.raises(InvalidParameterError, match="median, mean, best-pixel, percentile"):
        get_method("max")
