"""Progress bars for block-by-block work (writing rasters, reducing masks).

One context manager, :func:`progress_bar`, wraps tqdm.  It takes either a number of
steps or a dask collection (whose block count becomes the total), draws on stderr and
is completely silent with ``enabled=False`` (the CLI's ``--quiet``)::

    with progress_bar(mask, desc="mask.tif") as bar:
        write_cog(mask, "mask.tif", progress=bar)

Anything with an ``update(n)`` method satisfies :class:`Progress`, so callers can pass
their own bar.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable

from tqdm.auto import tqdm

__all__ = ["Progress", "block_count", "progress_bar"]


@runtime_checkable
class Progress(Protocol):
    """What s2mask's writers call while they work: one ``update(n)`` per ``n`` finished steps."""

    def update(self, n: int = 1) -> Any: ...


def block_count(work: Any) -> int:
    """The number of steps in ``work``: an int as is, else the dask block count.

    Accepts dask arrays, dask-backed ``xr.DataArray`` (its ``.data``) and anything with
    ``npartitions``; a numpy-backed array counts as one block.
    """
    if isinstance(work, bool):
        raise TypeError("progress_bar() needs a number of steps or a dask collection, not a bool.")
    if isinstance(work, int):
        return work
    data = getattr(work, "data", work)
    n = getattr(data, "npartitions", None)
    if n is None:
        n = getattr(work, "npartitions", None)
    return int(n) if n is not None else 1


@contextmanager
def progress_bar(
    total: int | Any | None,
    *,
    desc: str,
    enabled: bool = True,
    unit: str = "block",
    leave: bool = True,
) -> Iterator[tqdm]:
    """A tqdm bar for ``total`` steps (or the blocks of a dask collection).

    Args:
        total: number of steps, a dask collection (its block count), or ``None`` (unknown).
        desc: the label shown before the bar, e.g. the output file name.
        enabled: ``False`` draws nothing at all (the bar still accepts ``update``).
        unit: the name of one step.
        leave: keep the finished bar on screen.

    Yields:
        The bar; call ``bar.update(1)`` after each step.  It is closed on exit, also on error.
    """
    n = None if total is None else block_count(total)
    bar = tqdm(
        total=n,
        desc=desc,
        unit=unit,
        disable=not enabled,
        leave=leave,
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=0.5,
    )
    try:
        yield bar
    finally:
        bar.close()
