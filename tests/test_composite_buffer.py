"""Cloud/shadow buffer: exact disk dilation, chunk-independent."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from s2mask.composite.buffer import CLEAR, CLOUD, NODATA, SHADOW, dilate_mask, dilate_mask_block
from s2mask.errors import InvalidParameterError


def _brute_grow(flag: np.ndarray, r: int) -> np.ndarray:
    h, w = flag.shape
    out = np.zeros_like(flag)
    for y, x in zip(*np.nonzero(flag), strict=True):
        yy, xx = np.mgrid[0:h, 0:w]
        out |= (yy - y) ** 2 + (xx - x) ** 2 <= r * r
    return out


def _brute(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    clear = mask == CLEAR
    out[clear & _brute_grow(mask == SHADOW, r)] = SHADOW
    out[clear & _brute_grow(mask == CLOUD, r)] = CLOUD
    return out


def _random_mask(seed: int, h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice(np.array([CLEAR, CLOUD, SHADOW, NODATA], np.uint8), (h, w), p=[0.9, 0.03, 0.03, 0.04])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), r=st.integers(1, 6), h=st.integers(1, 20), w=st.integers(1, 20))
def test_block_dilation_matches_brute_force_disk(seed, r, h, w):
    mask = _random_mask(seed, h, w)
    np.testing.assert_array_equal(dilate_mask_block(mask, r), _brute(mask, r))


def test_disk_shape_and_class_priority():
    mask = np.zeros((11, 11), np.uint8)
    mask[5, 5] = CLOUD
    grown = dilate_mask_block(mask, 3)
    yy, xx = np.mgrid[0:11, 0:11]
    np.testing.assert_array_equal(grown == CLOUD, (yy - 5) ** 2 + (xx - 5) ** 2 <= 9)
    mask[5, 7] = SHADOW
    mask[0, 0] = NODATA
    grown = dilate_mask_block(mask, 1)
    assert grown[5, 6] == CLOUD  # next to both: cloud wins
    assert grown[5, 8] == SHADOW
    assert grown[5, 7] == SHADOW  # an existing class is never overwritten
    assert grown[0, 0] == NODATA and grown[0, 1] == CLEAR  # nodata is kept but not grown


@pytest.mark.parametrize("buffer", [1, 4, 9])
def test_dask_dilation_on_uneven_chunks_equals_whole_array(buffer):
    mask = _random_mask(7, 53, 47)
    chunks = ((5, 20, 28), (30, 3, 14))  # chunks thinner than the buffer too
    lazy = xr.DataArray(da.from_array(mask, chunks=chunks), dims=("y", "x"))
    out = dilate_mask(lazy, buffer)
    assert isinstance(out.data, da.Array)
    np.testing.assert_array_equal(out.values, dilate_mask_block(mask, buffer))
    np.testing.assert_array_equal(dilate_mask(xr.DataArray(mask, dims=("y", "x")), buffer).values, out.values)


def test_zero_buffer_is_identity_and_negative_is_refused():
    m = xr.DataArray(_random_mask(1, 8, 8), dims=("y", "x"))
    assert dilate_mask(m, 0) is m
    with pytest.raises(InvalidParameterError, match="0 or more"):
        dilate_mask(m, -1)
