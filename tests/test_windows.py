"""Window grid geometry: coverage, bounds, anchoring (property tests)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2mask.engine.windows import WindowGrid, axis_starts, resolve_window
from s2mask.errors import InvalidParameterError


@st.composite
def grids(draw) -> WindowGrid:
    window = draw(st.integers(2, 64))
    overlap = draw(st.integers(0, (window - 1) // 2))
    height = draw(st.integers(1, 300))
    width = draw(st.integers(1, 300))
    return WindowGrid(height, width, window, overlap)


@settings(max_examples=200, deadline=None)
@given(grids())
def test_windows_cover_every_pixel_and_stay_in_bounds(grid: WindowGrid) -> None:
    hp, wp = grid.padded_shape
    cover = np.zeros((hp, wp), dtype=np.int32)
    for y, x in grid:
        assert y >= 0 and y + grid.window <= hp
        assert x >= 0 and x + grid.window <= wp
        cover[y : y + grid.window, x : x + grid.window] += 1
    assert (cover[: grid.height, : grid.width] >= 1).all()
    assert len(list(grid)) == len(grid)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 2000), st.integers(2, 300), st.data())
def test_starts_are_anchored_to_the_origin(length: int, window: int, data) -> None:
    overlap = data.draw(st.integers(0, (window - 1) // 2))
    stride = window - overlap
    starts = axis_starts(length, window, stride)
    assert starts[0] == 0
    assert (np.diff(starts) > 0).all()
    # every start but the last is a multiple of the stride; the last ends at the edge
    assert (starts[:-1] % stride == 0).all()
    assert starts[-1] == max(0, length - window)
    # neighbouring windows overlap by at least `overlap` (no gap, no thinner seam)
    assert (np.diff(starts) <= stride).all()


@settings(max_examples=100, deadline=None)
@given(grids(), st.data())
def test_any_partition_gives_each_window_to_exactly_one_block(grid: WindowGrid, data) -> None:
    cuts_y = sorted(set(data.draw(st.lists(st.integers(1, max(1, grid.height - 1)), max_size=4))))
    cuts_x = sorted(set(data.draw(st.lists(st.integers(1, max(1, grid.width - 1)), max_size=4))))
    ey = [0, *[c for c in cuts_y if c < grid.height], grid.height]
    ex = [0, *[c for c in cuts_x if c < grid.width], grid.width]
    got = []
    for i in range(len(ey) - 1):
        for j in range(len(ex) - 1):
            got += grid.starting_in(ey[i], ey[i + 1], ex[j], ex[j + 1])
    assert sorted(got) == sorted(grid)


@settings(max_examples=100, deadline=None)
@given(grids(), st.data())
def test_touching_is_exactly_the_windows_covering_the_region(grid: WindowGrid, data) -> None:
    y0 = data.draw(st.integers(0, grid.height - 1))
    y1 = data.draw(st.integers(y0 + 1, grid.height))
    x0 = data.draw(st.integers(0, grid.width - 1))
    x1 = data.draw(st.integers(x0 + 1, grid.width))
    w = grid.window
    expected = [(y, x) for y, x in grid if y < y1 and y + w > y0 and x < x1 and x + w > x0]
    assert grid.touching(y0, y1, x0, x1) == expected


def test_small_image_gets_one_padded_window() -> None:
    grid = WindowGrid(10, 300, 64, 8)
    assert list(grid.starts_y) == [0]
    assert grid.padded_shape == (64, 300)
    assert list(grid.starts_x) == [0, 56, 112, 168, 224, 236]


@pytest.mark.parametrize(("window", "overlap"), [(64, 32), (64, 40), (64, -1), (1, 0)])
def test_bad_window_or_overlap_is_rejected(window: int, overlap: int) -> None:
    with pytest.raises(InvalidParameterError, match="expected"):
        resolve_window(window, overlap)


def test_defaults_come_from_the_card_window() -> None:
    assert resolve_window(None, None, default_window=128) == (128, 16)
    assert resolve_window(None, None) == (256, 32)
    assert resolve_window(100, 0) == (100, 0)
