"""Compute a dask array's blocks strip by strip, holding a fixed number of blocks whatever the scene size.

Dask's local scheduler orders a whole-scene graph by its own priorities. It runs block rows
across the full width and reads ahead while the model runs, so what it holds at once (a row
of input chunks and window sums, plus the read-ahead) grows with the scene.

:func:`stream_blocks` runs the graph in *batches* instead. The output blocks are cut into
vertical strips ``strip_px`` wide and taken strip by strip, row by row within a strip. Each
batch computes, with the local scheduler's threads:

* block *b*'s output,
* the model stage of block *b + 1*, so the model runs while block *b* is blended,
* the model inputs (assembled regions) of block *b + 2*, read while the model runs.

The caller consumes block *b* while batch *b + 1* runs in the background. Between batches
only what a later batch needs is kept:

* results downstream of the model (window-sum *pieces*, see :mod:`s2mask.engine.predict`)
  are kept until their last use. They are small halo strips and costly to redo. When a
  model task runs, its pieces are cut in the same batch, so the full window sums never
  outlive it;
* everything upstream of the model (reads, decoding, band selection, assembled regions) is
  kept while the next batches of the same strip need it, and is otherwise read again later.
  Within a strip this keeps the halo rows for the next block row. The halo columns that the
  next strip needs are read twice rather than held for the whole scene height.

Memory is then a few blocks plus one strip-wide halo row and one halo column of window sums
(``window`` px wide, a few MB per block). It grows with the strip width, not the scene width,
and with the height only by that thin column. The price is re-reading the halo columns at
strip edges: with the reader chunked by :func:`s2mask.engine.predict.input_chunks`, that is
about ``window / strip_px`` of the pixels, but a JPEG 2000 reader decodes whole tiles (1024 px
in Sentinel-2), so each strip edge costs a tile column decoded twice on each side. The
default strip for one scene (16384 px) is therefore wider than a Sentinel-2 tile (10980 px):
a tile runs as one strip and decodes each JPEG 2000 tile once (BENCHMARKS.md: 4096 px strips
cost 5-16 s and 10-30 CPU-s more on a full SAFE tile, for 0.07 GiB less memory). Wider mosaics
are still cut into strips, so their memory stays bounded. A graph that masks several scenes
(a composite) holds a halo row per scene, so its strips stay 4096 px wide.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import dask.array as da
import dask.threaded
import numpy as np
from dask._task_spec import DataNode
from dask.core import get_dependencies

from s2mask.engine.predict import MODEL_STAGE

__all__ = ["DEFAULT_STRIP_PX", "SCENES_STRIP_PX", "default_strip_px", "has_model_stage", "stream_blocks", "strip_batches"]

DEFAULT_STRIP_PX = 16384
"""Width of the vertical strips (px) for one scene: wider holds more blocks at once, narrower
re-reads (and re-decodes) more halo. Wider than a Sentinel-2 tile, so a tile is one strip."""
SCENES_STRIP_PX = 4096
"""Width of the strips when the graph masks several scenes (a composite): a halo row per scene."""

Key = Hashable


def _name(key: Key) -> str:
    return str(key[0] if isinstance(key, tuple) else key)


def has_model_stage(arr: da.Array) -> bool:
    """Whether ``arr``'s graph contains :func:`~s2mask.engine.predict.predict`'s model stage."""
    return any(_name(k).startswith(MODEL_STAGE) for k in arr.__dask_graph__())


def default_strip_px(arr: da.Array) -> int:
    """The strip width for ``arr``: :data:`DEFAULT_STRIP_PX` when it masks one scene, else :data:`SCENES_STRIP_PX`."""
    return _strip_px_for(k for k in arr.__dask_graph__() if _name(k).startswith(MODEL_STAGE))


def _strip_px_for(model_keys: Iterable[Key]) -> int:
    """:func:`default_strip_px` from the graph's model-stage keys (one layer per scene)."""
    return DEFAULT_STRIP_PX if len({_name(k) for k in model_keys}) <= 1 else SCENES_STRIP_PX


def _strips(chunks_x: tuple[int, ...], strip_px: int) -> list[list[int]]:
    """Block columns grouped into strips at least ``strip_px`` wide (the last may be narrower)."""
    if strip_px < 1:
        raise ValueError(f"strip_px is {strip_px}; expected a positive number of pixels.")
    strips: list[list[int]] = [[]]
    width = 0
    for j, w in enumerate(chunks_x):
        if strips[-1] and width >= strip_px:
            strips.append([])
            width = 0
        strips[-1].append(j)
        width += int(w)
    return strips


def strip_batches(
    chunks_y: tuple[int, ...], chunks_x: tuple[int, ...], strip_px: int
) -> list[list[tuple[int, int]]]:
    """Block indices ``(i, j)`` in batches of one block: strips of columns at least ``strip_px`` wide.

    Strips run left to right, each strip row by row from the top; every block appears once.
    """
    return [[(i, j)] for cols in _strips(chunks_x, strip_px) for i in range(len(chunks_y)) for j in cols]


class _Plan:
    """The graph of ``arr`` as plain dicts, and which keys sit downstream of the model."""

    def __init__(self, arr: da.Array) -> None:
        self.dsk: dict[Key, Any] = dict(arr.__dask_graph__())
        self.deps: dict[Key, set[Key]] = {k: set(get_dependencies(self.dsk, k)) for k in self.dsk}
        self.dependents: dict[Key, set[Key]] = {k: set() for k in self.dsk}
        for k, ds in self.deps.items():
            for d in ds:
                self.dependents[d].add(k)
        self.model = {k for k in self.dsk if _name(k).startswith(MODEL_STAGE)}
        downstream, todo = set(self.model), list(self.model)
        while todo:
            for d in self.dependents[todo.pop()]:
                if d not in downstream:
                    downstream.add(d)
                    todo.append(d)
        self.downstream = downstream

    def closure(self, targets: set[Key], available: set[Key]) -> set[Key]:
        """Keys to compute for ``targets`` when ``available`` are already at hand."""
        need: set[Key] = set()
        todo = [k for k in targets if k not in available]
        while todo:
            k = todo.pop()
            if k in need:
                continue
            need.add(k)
            todo.extend(d for d in self.deps[k] if d not in available and d not in need)
        return need

    def strip_uses(self, batches: list[list[Key]], strip_of: list[int]) -> None:
        """Record in which strips each key is used (``self.uses``)."""
        self.uses: dict[Key, set[int]] = {k: set() for k in self.dsk}
        for outputs, strip in zip(batches, strip_of, strict=True):
            for k in self.closure(set(outputs), set()):
                self.uses[k].add(strip)

    def _with_pieces(self, targets: set[Key], available: set[Key]) -> set[Key]:
        """``targets`` plus the pieces of every model task computing them would run."""
        need = self.closure(targets, available)
        return targets | {d for k in need & self.model for d in self.dependents[k]}

    def targets(self, batches: list[list[Key]], b: int, available: set[Key]) -> set[Key]:
        """What batch ``b`` computes: block ``b``; the model stage of block ``b + 1`` (so the
        model runs while block ``b`` is blended); the model inputs of block ``b + 2`` (read
        while the model runs)."""
        targets = self._with_pieces(set(batches[b]), available)
        if b + 1 < len(batches):
            ahead = self.closure(set(batches[b + 1]), available | self.closure(targets, available))
            targets = self._with_pieces(
                targets | {d for k in ahead & self.model for d in self.dependents[k]}, available
            )
        if b + 2 < len(batches):
            have = available | self.closure(targets, available)
            targets |= self.model_inputs(self.closure(set(batches[b + 2]), have))
        return targets

    def inputs_of(self, batches: list[list[Key]], b: int, available: set[Key]) -> set[Key]:
        """The ``available`` keys that batch ``b`` uses."""
        if b >= len(batches):
            return set()
        need = self.closure(self.targets(batches, b, available), available)
        return self.deps_of(need) & available

    def deps_of(self, keys: set[Key]) -> set[Key]:
        """Every direct dependency of ``keys``."""
        return {d for k in keys for d in self.deps[k]}

    def model_inputs(self, need: set[Key]) -> set[Key]:
        """The upstream keys of ``need`` that feed a model task directly (the assembled regions)."""
        return {k for k in need if k not in self.downstream and self.dependents[k] & self.model}


def stream_blocks(
    arr: da.Array,
    *,
    strip_px: int | None = None,
    get: Callable[..., Any] | None = None,
    on_batch: Callable[[int, dict[Key, Any]], None] | None = None,
) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
    """Yield ``(block index, block)`` for every block of ``arr``, strip by strip (module doc).

    ``arr`` is 2-D ``(y, x)`` or 3-D with one chunk along the first axis; ``get`` is a
    local dask scheduler function (default :func:`dask.threaded.get`); ``strip_px`` defaults to
:func:`default_strip_px`.  The values are
    those ``arr.compute()`` would give; the order is that of :func:`strip_batches`.
    ``on_batch(b, held)`` is called after each batch with the results held for later
    batches (diagnostics: what stays in memory between blocks).
    """
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.numblocks[0] != 1):
        raise ValueError(
            f"stream_blocks needs a (y, x) array or one chunk along its first axis; got chunks {arr.chunks}."
        )
    get = get or dask.threaded.get
    plan = _Plan(arr)
    strip_px = _strip_px_for(plan.model) if strip_px is None else strip_px  # the plan has walked the graph
    lead = (0,) * (arr.ndim - 2)
    batches = [
        [(arr.name, *lead, i, j) for i, j in batch]
        for batch in strip_batches(arr.chunks[-2], arr.chunks[-1], strip_px)
    ]
    col_strip = {j: n for n, cols in enumerate(_strips(arr.chunks[-1], strip_px)) for j in cols}
    strip_of = [col_strip[outputs[0][-1]] for outputs in batches]
    plan.strip_uses(batches, strip_of)
    store: dict[Key, Any] = {}
    done: set[Key] = set()

    def worth_keeping(k: Key, b: int, pending: set[Key], used_next: set[Key]) -> bool:
        """Keep model results while pending; inputs only for the next batch or later in this strip."""
        if not pending:
            return False
        if k in plan.downstream or k in used_next:
            return True
        # the strips of the batches this one reaches into (model ahead, read-ahead)
        strips = {strip_of[min(b + step, len(batches) - 1)] for step in (1, 2)}
        return any(strips & plan.uses[d] for d in pending)

    def plan_batch(b: int) -> tuple[dict[Key, Any], list[Key], set[Key], set[Key]]:
        available = set(store)
        targets = plan.targets(batches, b, available)
        need = plan.closure(targets, available)
        # what the next batch will take from what is at hand after this one
        used_next = plan.inputs_of(batches, b + 1, available | need)
        keep = {k for k in need - targets if worth_keeping(k, b, plan.dependents[k] - done - need, used_next)}
        graph: dict[Key, Any] = {k: plan.dsk[k] for k in need}
        for k in plan.deps_of(need) - need:
            graph[k] = DataNode(k, store[k])
        return graph, sorted(targets | keep, key=str), need, used_next

    if get is dask.threaded.get:
        # one pool of the configured size for every batch (dask would otherwise make one of
        # cpu_count + 4 threads for calls from a non-main thread)
        workers = dask.config.get("num_workers", None) or os.cpu_count() or 1
        workers_pool = ThreadPoolExecutor(workers, thread_name_prefix="s2mask-dask")
        get = partial(dask.threaded.get, pool=workers_pool)
    else:
        workers_pool = None
    # batch b + 1 runs in the background while the caller writes batch b's blocks
    with ThreadPoolExecutor(1, thread_name_prefix="s2mask-stream") as pool:
        graph, wanted, need, used_next = plan_batch(0)
        running = pool.submit(get, graph, wanted)
        try:
            for b, outputs in enumerate(batches):
                values = dict(zip(wanted, running.result(), strict=True))
                running = None
                done |= need
                blocks = [(tuple(k[1:]), values.pop(k)) for k in outputs]
                store.update(values)
                for k in list(store):
                    if not worth_keeping(k, b, plan.dependents[k] - done, used_next):
                        del store[k]
                if on_batch is not None:
                    on_batch(b, dict(store))
                if b + 1 < len(batches):
                    graph, wanted, need, used_next = plan_batch(b + 1)
                    running = pool.submit(get, graph, wanted)
                yield from blocks
        finally:
            if running is not None:  # the caller stopped early or a write failed: let it finish, drop it
                with contextlib.suppress(Exception):
                    running.result()
            if workers_pool is not None:
                workers_pool.shutdown()
