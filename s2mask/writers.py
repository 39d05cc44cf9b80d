"""The public writers (``s2mask.write_cog``, ``write_mask``, ``write_probabilities``).

They are :mod:`s2mask.io.cog`'s writers with the engine's block computation as the default
``compute`` (:func:`s2mask.engine.compute_blocks`): a model prediction is streamed strip by
strip and each model window runs once, as in ``s2mask run``.  ``io.cog`` itself only writes
the blocks it is given and knows nothing of the engine; called directly its default computes
each block on its own, which repeats the windows of every block's halo.
"""

from __future__ import annotations

import functools
from typing import Any

from s2mask.engine.compute import compute_blocks
from s2mask.io import cog

__all__ = ["write_cog", "write_mask", "write_probabilities"]


def _with_engine(writer: Any) -> Any:
    @functools.wraps(writer)
    def write(*args: Any, compute: Any = compute_blocks, **kwargs: Any) -> Any:
        return writer(*args, compute=compute, **kwargs)

    write.__doc__ = (writer.__doc__ or "") + "\n\n    ``compute`` defaults to :func:`s2mask.engine.compute_blocks`.\n"
    return write


write_cog = _with_engine(cog.write_cog)
write_mask = _with_engine(cog.write_mask)
write_probabilities = _with_engine(cog.write_probabilities)
