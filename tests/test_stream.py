"""Strip-by-strip streaming of the engine's graph: same values as dask, bounded holdings, bounded re-reads."""

from __future__ import annotations

import threading
from collections import Counter

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from s2mask.bands import DEFAULT_BANDS
from s2mask.engine.predict import MODEL_STAGE, input_chunks, predict
from s2mask.engine.stream import has_model_stage, stream_blocks, strip_batches
from s2mask.mask import to_mask
from s2mask.testing.models import ThresholdModel, tiny_unet


class CountingSource:
    """An array-like for ``da.from_array`` that counts how often each window is read."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.shape, self.dtype, self.ndim = array, array.shape, array.dtype, array.ndim
        self.reads: Counter = Counter()
        self.lock = threading.Lock()

    def __getitem__(self, key):
        out = self.array[key]
        if out.size:  # dask probes an empty slice for the dtype
            _, ys, xs = key
            with self.lock:
                self.reads[(ys.start, xs.start)] += 1
        return out


def cube_of(source, chunks) -> xr.DataArray:
    return xr.DataArray(
        da.from_array(source, chunks=(source.shape[0], *chunks), asarray=False, fancy=False),
        dims=("band", "y", "x"),
        coords={"band": list(DEFAULT_BANDS)},
    )


def assemble(arr: da.Array, **kw) -> tuple[np.ndarray, list]:
    out = np.full(arr.shape, 77, dtype=arr.dtype)
    starts = [np.cumsum((0, *c)) for c in arr.chunks]
    order = []
    for idx, block in stream_blocks(arr, **kw):
        order.append(idx)
        out[tuple(slice(s[i], s[i + 1]) for s, i in zip(starts, idx, strict=True))] = block
    return out, order


@pytest.fixture(scope="module")
def unet():
    return tiny_unet(window_size=32)


def scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    a = np.random.default_rng(seed).random((len(DEFAULT_BANDS), h, w), dtype=np.float32)
    a[:, :20, :30] = np.nan  # a nodata corner
    return a


@pytest.mark.parametrize("strip_px", [1, 64, 100, 10_000])
def test_stream_equals_dask_for_any_strip_width(unet, strip_px):
    array = scene(150, 230)
    probs = predict(cube_of(array, (48, 48)), unet, chunks=48, batch_size=3)
    expected = probs.data.compute()
    got, order = assemble(probs.data, strip_px=strip_px)
    np.testing.assert_array_equal(got, expected)
    assert sorted(order) == sorted(np.ndindex(*probs.data.numblocks))  # every block exactly once


def test_stream_of_mask_with_halo_split_chunks_equals_dask(unet):
    array = scene(200, 260, seed=3)
    chunks = input_chunks(array.shape[1:], unet, chunks=64)
    assert all(sum(c) == n for c, n in zip(chunks, array.shape[1:], strict=True))
    mask = to_mask(predict(cube_of(array, chunks), unet, chunks=64)).data
    got, _ = assemble(mask, strip_px=128)
    np.testing.assert_array_equal(got, mask.compute())
    assert (got == 255).any() and (got != 255).any()


def test_strip_batches_order_is_strips_then_rows():
    batches = strip_batches((10, 10, 10), (10, 10, 10, 10, 5), strip_px=20)
    flat = [b for batch in batches for b in batch]
    assert flat[:6] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
    assert flat[6:12] == [(0, 2), (0, 3), (1, 2), (1, 3), (2, 2), (2, 3)]
    assert flat[12:] == [(0, 4), (1, 4), (2, 4)]
    with pytest.raises(ValueError, match="strip_px"):
        strip_batches((10,), (10,), 0)


def held_counts(unet, h: int, w: int, *, block: int = 32, strip_px: int = 64) -> tuple[int, int]:
    """Most results held between batches, and most model pieces among them."""
    array = scene(h, w)
    chunks = input_chunks((h, w), unet, chunks=block)
    mask = to_mask(predict(cube_of(array, chunks), unet, chunks=block)).data
    most = [0, 0]

    def watch(_b, held):
        most[0] = max(most[0], len(held))
        most[1] = max(most[1], sum(1 for k in held if str(k[0]).startswith("s2mask-piece")))

    for _ in stream_blocks(mask, strip_px=strip_px, on_batch=watch):
        pass
    return most[0], most[1]


def test_what_is_held_does_not_grow_with_scene_width(unet):
    narrow = held_counts(unet, 128, 256)
    wide = held_counts(unet, 128, 1024)  # 4x the width, 4x the blocks
    assert wide == narrow


def test_what_is_held_grows_only_by_the_halo_column_with_height(unet):
    short = held_counts(unet, 128, 256)
    tall = held_counts(unet, 512, 256)  # 12 more block rows
    assert tall[0] - short[0] == tall[1] - short[1]  # only model pieces, no input chunks
    assert 0 < tall[1] - short[1] <= 2 * 12  # one right and one corner piece per extra row


def test_reads_each_chunk_at_most_twice_and_only_at_strip_edges(unet):
    h, w, block, strip = 160, 320, 32, 96
    source = CountingSource(scene(h, w))
    chunks = input_chunks((h, w), unet, chunks=block)
    mask = to_mask(predict(cube_of(source, chunks), unet, chunks=block)).data
    assemble(mask, strip_px=strip)
    edges_x = np.cumsum((0, *chunks[1]))
    assert len(source.reads) == len(chunks[0]) * len(chunks[1])  # every chunk read
    twice = {k for k, n in source.reads.items() if n > 1}
    assert max(source.reads.values()) == 2
    # only the halo chunks just right of a strip edge (x = 96, 192, 288) are read again
    halo_cols = {int(edges_x[i]) for i in range(len(chunks[1])) if int(edges_x[i]) % strip == 0 and edges_x[i] > 0}
    assert {x for _, x in twice} <= halo_cols
    assert sum(source.reads.values()) <= 1.25 * len(source.reads)


def test_model_error_propagates_and_leaves_no_threads(unet):
    class Broken(ThresholdModel):
        def predict_proba(self, batch):
            raise RuntimeError("model exploded")

    before = threading.active_count()
    probs = predict(cube_of(scene(100, 100), (32, 32)), Broken(), window=32, chunks=32)
    with pytest.raises(RuntimeError, match="model exploded"):
        for _ in stream_blocks(probs.data, strip_px=64):
            pass
    assert threading.active_count() <= before


def test_has_model_stage_finds_the_engine_graph(unet):
    cube = cube_of(scene(64, 64), (32, 32))
    probs = predict(cube, unet, chunks=32)
    assert has_model_stage(to_mask(probs).data)
    assert any(str(k[0]).startswith(MODEL_STAGE) for k in dict(probs.data.__dask_graph__()))
    assert not has_model_stage(cube.data + 1)


def test_stream_rejects_multi_chunk_leading_axis(unet):
    arr = da.zeros((4, 32, 32), chunks=(2, 16, 16))
    with pytest.raises(ValueError, match="one chunk along its first axis"):
        next(stream_blocks(arr))


def test_default_strip_holds_a_whole_sentinel2_tile():
    """A 10980 px tile in 1024 px blocks is one strip by default: no JPEG 2000 tile column is decoded twice."""
    from s2mask.engine.stream import DEFAULT_STRIP_PX, _strips

    blocks = (1024,) * 10 + (740,)
    assert _strips(blocks, DEFAULT_STRIP_PX) == [list(range(11))]
    wider = (1024,) * 40  # a mosaic wider than the default strip is still cut, so memory stays bounded
    assert len(_strips(wider, DEFAULT_STRIP_PX)) > 1


def test_default_strip_is_narrower_when_the_graph_masks_several_scenes(unet):
    """One scene: the wide default; two scenes (a composite holds a halo row per scene): the narrow one."""
    from s2mask.engine.stream import DEFAULT_STRIP_PX, SCENES_STRIP_PX, default_strip_px

    cubes = [cube_of(scene(64, 96, seed), (32, 32)) for seed in (0, 1)]
    one = predict(cubes[0], unet, chunks=32, batch_size=4).data
    two = one + predict(cubes[1], unet, chunks=32, batch_size=4).data
    assert default_strip_px(one) == DEFAULT_STRIP_PX
    assert default_strip_px(two) == SCENES_STRIP_PX < DEFAULT_STRIP_PX
    expected = two.compute()
    got, _ = assemble(two)  # the default strip width gives dask's values
    np.testing.assert_array_equal(got, expected)
