"""Blend weights and accumulation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2mask.engine.blend import Accumulator, combine, taper, window_weight
from s2mask.errors import InvalidParameterError


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 512), st.data())
def test_taper_is_positive_symmetric_and_bounded(window: int, data) -> None:
    overlap = data.draw(st.integers(0, window // 2))
    w = taper(window, overlap)
    assert w.shape == (window,) and w.dtype == np.float32
    assert (w > 0).all() and (w <= 1).all()
    np.testing.assert_array_equal(w, w[::-1])
    # flat centre
    assert (w[overlap : window - overlap] == 1).all()


@pytest.mark.parametrize(("window", "overlap"), [(64, 8), (256, 32), (33, 16)])
def test_neighbouring_ramps_form_a_partition_of_unity(window: int, overlap: int) -> None:
    w = taper(window, overlap, floor=1e-9)
    stride = window - overlap
    shared = w[stride:] + w[:overlap]
    np.testing.assert_allclose(shared, 1.0, atol=1e-6)


def test_window_weight_is_2d_never_zero_symmetric_and_read_only() -> None:
    w = window_weight(32, 4)
    assert w.shape == (32, 32) and w.min() > 0
    np.testing.assert_array_equal(w, w.T)
    np.testing.assert_array_equal(w, w[::-1, ::-1])
    with pytest.raises(ValueError):
        w[0, 0] = 1.0


def test_bad_floor_is_rejected() -> None:
    with pytest.raises(InvalidParameterError, match="floor"):
        taper(16, 2, floor=0.0)


def test_accumulator_blends_to_the_weighted_mean() -> None:
    weight = window_weight(4, 1)
    acc = Accumulator.zeros((10, 20), (4, 7), 2)
    a = np.zeros((1, 2, 4, 4), np.float32)
    a[:, 0] = 1.0
    b = np.zeros((1, 2, 4, 4), np.float32)
    b[:, 1] = 1.0
    acc.add(a, [(10, 20)], weight)
    acc.add(b, [(10, 23)], weight)
    out = acc.result()
    np.testing.assert_allclose(out.sum(axis=0), 1.0, rtol=1e-6)
    assert (out[0, :, :3] == 1).all() and (out[1, :, 4:] == 1).all()
    # the shared column is the weighted mean of both windows
    t = weight[:, 3] / (weight[:, 3] + weight[:, 0])
    np.testing.assert_allclose(out[0, :, 3], t, rtol=1e-6)


def test_empty_pixels_are_nan_and_combine_adds_overlaps() -> None:
    acc = Accumulator.zeros((0, 0), (3, 3), 1)
    assert np.isnan(acc.result()).all()
    left = Accumulator.zeros((0, 0), (2, 3), 1)
    left.num += 2.0
    left.den += 1.0
    right = Accumulator.zeros((1, 1), (2, 3), 1)
    right.num += 4.0
    right.den += 1.0
    out = combine([left, right], (0, 3, 0, 4), 1).result()[0]
    assert out[0, 0] == 2.0 and out[1, 1] == 3.0 and out[2, 3] == 4.0
    assert np.isnan(out[2, 0]) and np.isnan(out[0, 3])
