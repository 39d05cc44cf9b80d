"""The engine decides how blocks are computed (engine/compute.py); the writer only writes them."""

from __future__ import annotations

import subprocess
import sys
import threading

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

import s2mask.engine.compute
from s2mask.bands import DEFAULT_BANDS
from s2mask.engine import predict
from s2mask.engine.compute import block_slices, compute_blocks
from s2mask.engine.stream import strip_batches
from s2mask.io.cog import compute_each_block
from s2mask.mask import to_mask
from s2mask.testing.models import ThresholdModel


def _cube(h: int = 200, w: int = 330) -> xr.DataArray:
    rng = np.random.default_rng(7)
    a = rng.random((len(DEFAULT_BANDS), h, w), dtype=np.float32) * 0.6
    a[:, 60:120, 40:150] = 0.9
    coords = {"band": list(DEFAULT_BANDS), "y": 1e6 - 10.0 * np.arange(h), "x": 4e5 + 10.0 * np.arange(w)}
    return xr.DataArray(da.from_array(a, chunks=(-1, 64, 64)), dims=("band", "y", "x"), coords=coords)


def _plain() -> da.Array:
    return da.arange(7 * 9 * 11, chunks=-1).reshape(7, 9, 11).rechunk((7, 4, 3)) * 3


def _prediction() -> da.Array:
    return to_mask(predict(_cube(), ThresholdModel(), window=32, chunks=64)).data[None]


class _Collector:
    """A ``write`` that assembles the blocks and fails the test if two calls overlap."""

    def __init__(self, arr: da.Array) -> None:
        self.out = np.zeros(arr.shape, dtype=arr.dtype)
        self.seen: list[tuple[slice, ...]] = []
        self.busy = threading.Lock()

    def __call__(self, slices: tuple[slice, ...], block: np.ndarray) -> None:
        assert self.busy.acquire(blocking=False), "write was called while another call was running"
        try:
            self.out[slices] = block
            self.seen.append(slices)
        finally:
            self.busy.release()


def _custom_get(dsk, keys, **kwargs):  # noqa: ANN001, ANN003, ANN202
    return dask.get(dsk, keys, **kwargs)


SCHEDULERS = {"threads": "threads", "sync": "sync", "custom get": _custom_get}


@pytest.mark.parametrize("make", [_plain, _prediction], ids=["plain", "prediction"])
@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
@pytest.mark.parametrize("compute", [compute_blocks, compute_each_block], ids=["engine", "writer"])
def test_every_block_once_one_call_at_a_time_equal_to_compute(make, scheduler, compute, monkeypatch) -> None:
    monkeypatch.setattr(s2mask.engine.compute, "BATCH_PER_CPU", 1)  # several batches for the custom get
    arr = make()
    write = _Collector(arr)
    compute(arr, write, scheduler=SCHEDULERS[scheduler])
    assert sorted(map(str, write.seen)) == sorted(str(s) for _, s in block_slices(arr))
    np.testing.assert_array_equal(write.out, arr.compute(scheduler="sync"))


def test_a_prediction_is_computed_strip_by_strip_with_local_threads(monkeypatch) -> None:
    real, calls = s2mask.engine.compute.stream_blocks, []

    def narrow(arr, **kw):  # noqa: ANN001, ANN003, ANN202
        calls.append(arr.name)
        return real(arr, strip_px=64, **kw)  # one block column per strip, so the order shows

    monkeypatch.setattr(s2mask.engine.compute, "stream_blocks", narrow)
    arr = _prediction()
    write = _Collector(arr)
    compute_blocks(arr, write, scheduler="threads")
    starts = [np.cumsum((0, *c)) for c in arr.chunks[1:]]
    order = [(s.start, t.start) for _, s, t in write.seen]
    batches = strip_batches(arr.chunks[1], arr.chunks[2], strip_px=64)
    assert calls == [arr.name]
    assert order == [(int(starts[0][i]), int(starts[1][j])) for ((i, j),) in batches]
    assert order != sorted(order)  # column strips first, not row by row
    np.testing.assert_array_equal(write.out, arr.compute(scheduler="sync"))

    compute_blocks(_plain(), _Collector(_plain()), scheduler="threads")  # no model stage: not streamed
    assert calls == [arr.name]


def _raising(block: np.ndarray, block_info=None) -> np.ndarray:  # noqa: ANN001
    if block_info[0]["chunk-location"][1:] == (1, 1):
        raise RuntimeError("block failed")
    return block


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
def test_errors_propagate_unchanged(scheduler: str) -> None:
    arr = _plain().map_blocks(_raising, dtype=int)
    with pytest.raises(RuntimeError, match="block failed"):
        compute_blocks(arr, _Collector(arr), scheduler=SCHEDULERS[scheduler])

    class Full(OSError):
        pass

    def full(slices, block):  # noqa: ANN001, ANN202
        raise Full("disk full")

    with pytest.raises(Full):
        compute_blocks(_plain(), full, scheduler=SCHEDULERS[scheduler])


def test_distributed_client_computes_on_the_cluster_and_writes_here() -> None:
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as c,
        distributed.Client(c) as client,
    ):
        arr = _prediction()
        write = _Collector(arr)
        here = threading.get_ident()
        threads = set()
        compute_blocks(arr, lambda s, b: (threads.add(threading.get_ident()), write(s, b)), scheduler=client)
        np.testing.assert_array_equal(write.out, arr.compute(scheduler="sync"))
        assert threads == {here} and len(write.seen) == arr.npartitions
        with pytest.raises(RuntimeError, match="block failed"):
            exploding = _plain().map_blocks(_raising, dtype=int)
            compute_blocks(exploding, _Collector(exploding), scheduler=client)


def test_the_writer_imports_no_engine() -> None:
    code = (
        "import sys, s2mask.io.cog, s2mask.io.product; "
        "print(sorted(m for m in sys.modules if m.startswith(('s2mask.engine', 's2mask.model'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_public_writers_run_each_model_window_once(tmp_path) -> None:
    """``s2mask.write_mask`` computes with the engine; ``io.cog``'s own default repeats the halos."""
    import s2mask
    from s2mask.io import cog

    calls: list[int] = []

    class Counting(ThresholdModel):
        def predict_proba(self, batch):  # noqa: ANN001, ANN201
            calls.append(len(batch))
            return super().predict_proba(batch)

    def windows(write) -> int:  # noqa: ANN001
        calls.clear()
        mask = to_mask(predict(_cube(), Counting(), window=32, chunks=64))
        write(mask, tmp_path / f"{len(list(tmp_path.iterdir()))}.tif", overwrite=True)
        return sum(calls)

    from s2mask.engine import count_windows

    engine, plain = windows(s2mask.write_mask), windows(cog.write_mask)
    assert engine == count_windows(_cube(), ThresholdModel(), window=32)  # every window once
    assert plain > engine  # each block on its own recomputes the windows of its halo
