"""How a lazy array's blocks are computed and handed, in this process, to the code that writes them.

:func:`compute_blocks` is what a writer (:func:`s2mask.io.cog.write_cog`) is given as
``compute=``: the writer takes blocks and writes them; this module chooses how the graph runs.

* **A dask.distributed client** (``scheduler=client`` or the default client): the cluster
  computes all blocks as one graph (shared inputs once) and each result is handed over as it
  arrives (``distributed.as_completed``), in this process.
* **The local threaded or synchronous scheduler**: model predictions (a graph holding
  :func:`~s2mask.engine.predict.predict`'s model stage) are computed strip by strip
  (:func:`s2mask.engine.stream.stream_blocks`: memory that does not grow with the scene);
  other arrays through ``dask.array.store`` (one graph, so inputs shared between blocks are
  computed once).
* **Any other scheduler** (``processes``, a custom ``get``): a few blocks at a time
  (``BATCH_PER_CPU`` per CPU), handed over here.

Whatever the path, ``write(slices, block)`` is called once per block, never two calls at
once, in this process: a rasterio dataset cannot travel to other processes, and only one
process ever touches the file.  An exception raised while computing a block, or by
``write``, propagates unchanged; what is still running on a cluster is cancelled.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any

import dask
import dask.array as da
import dask.local
import dask.threaded
import numpy as np

from s2mask.engine.stream import has_model_stage, stream_blocks

__all__ = ["BATCH_PER_CPU", "Write", "block_slices", "compute_blocks"]

Slices = tuple[slice, ...]
Write = Callable[[Slices, np.ndarray], None]
"""``write(slices, block)``: receives one computed block and where it sits in the array."""

BATCH_PER_CPU = 8
"""Blocks computed per batch and CPU when neither a local-threads nor a distributed scheduler runs."""

_THREADED = (None, "threads", "threading")
_SYNC = ("sync", "synchronous", "single-threaded")


def compute_blocks(arr: da.Array, write: Write, *, scheduler: Any = None) -> None:
    """Compute every block of ``arr`` and call ``write(slices, block)`` for each (module doc).

    ``scheduler`` is a dask scheduler (``"threads"``, ``"sync"``, ``"processes"``, a ``get``
    function or a ``distributed.Client``); default the active one.
    """
    client = _distributed_client(scheduler, arr)
    if client is not None:
        _on_cluster(arr, write, client)
        return
    get = _local_get(scheduler, arr)
    if get is None:
        _in_batches(arr, write, scheduler)
    elif has_model_stage(arr):
        _strip_by_strip(arr, write, get)
    else:
        da.store(arr, _StoreTarget(arr, write), lock=threading.Lock(), scheduler=scheduler, compute=True)


def block_slices(arr: da.Array) -> list[tuple[tuple[int, ...], Slices]]:
    """(block index, slices) of every block of ``arr``, in C order (row by row)."""
    starts = [np.cumsum((0, *c)) for c in arr.chunks]
    out = []
    for idx in np.ndindex(*arr.numblocks):
        slices = tuple(slice(int(s[i]), int(s[i + 1])) for s, i in zip(starts, idx, strict=True))
        out.append((idx, slices))
    return out


# --------------------------------------------------------------------------- which scheduler


def _distributed_client(scheduler: Any, arr: da.Array) -> Any | None:
    """The ``distributed.Client`` that would run ``arr``, or ``None`` for local schedulers."""
    if "distributed" not in sys.modules:  # no client can exist: don't pay its import
        return None
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - distributed is a dependency
        return None
    if isinstance(scheduler, Client):
        return scheduler
    get = dask.base.get_scheduler(scheduler=scheduler, collections=[arr])
    owner = getattr(get, "__self__", None)
    return owner if isinstance(owner, Client) else None


def _local_get(scheduler: Any, arr: da.Array) -> Any | None:
    """dask's ``get`` for ``arr`` when it is the local threaded or synchronous scheduler, else ``None``."""
    if scheduler is None and "distributed" not in sys.modules:  # no client can exist: skip dask's
        configured = dask.config.get("scheduler", None)  # lookup, which imports distributed (0.2 s)
        if configured in _THREADED:
            return dask.threaded.get
        if configured in _SYNC:
            return dask.local.get_sync
    get = dask.base.get_scheduler(scheduler=scheduler, collections=[arr])
    if get is None:
        return dask.threaded.get
    return get if get in (dask.threaded.get, dask.local.get_sync) else None


# --------------------------------------------------------------------------- the three ways


def _on_cluster(arr: da.Array, write: Write, client: Any) -> None:
    """One graph on the cluster; each block written here as it arrives."""
    from distributed import as_completed

    blocks = block_slices(arr)
    keys = arr.to_delayed().ravel().tolist()
    futures = client.compute(keys)  # one graph: shared inputs are computed once
    where = {f.key: slices for f, (_, slices) in zip(futures, blocks, strict=True)}
    try:
        for fut, block in as_completed(futures, with_results=True):
            write(where[fut.key], block)
            fut.release()
    finally:
        client.cancel(futures)


def _strip_by_strip(arr: da.Array, write: Write, get: Callable[..., Any]) -> None:
    """Model predictions with a local scheduler: strip by strip, so memory does not grow with the scene."""
    starts = [np.cumsum((0, *c)) for c in arr.chunks]
    for idx, block in stream_blocks(arr, get=get):
        write(tuple(slice(int(s[i]), int(s[i + 1])) for s, i in zip(starts, idx, strict=True)), block)


def _in_batches(arr: da.Array, write: Write, scheduler: Any) -> None:
    """Other schedulers (processes, custom get): compute a few blocks at a time, write them here."""
    blocks = block_slices(arr)
    delayed = arr.to_delayed()
    step = max(1, BATCH_PER_CPU * (os.cpu_count() or 1))
    for i in range(0, len(blocks), step):
        chunk = blocks[i : i + step]
        values = dask.compute(*[delayed[idx] for idx, _ in chunk], scheduler=scheduler)
        for (_, slices), value in zip(chunk, values, strict=True):
            write(slices, value)


class _StoreTarget:
    """A ``dask.array.store`` target that hands each block to ``write`` (calls serialised by store's lock)."""

    def __init__(self, arr: da.Array, write: Write) -> None:
        self.write = write
        self.shape, self.dtype, self.ndim = arr.shape, arr.dtype, arr.ndim

    def __setitem__(self, key: Slices, block: np.ndarray) -> None:
        self.write(key, block)
