"""The options every command that reads products and runs the model shares, defined once.

:class:`~s2mask.run.RunOptions` (``s2mask run``, ``s2mask stac``) and
:class:`~s2mask.composite.CompositeOptions` (``s2mask composite``) are both
:class:`InputOptions` (how products are read) and :class:`EngineOptions` (how the model runs
over them): one field, one default and one meaning for every command.  The CLI's option of
the same name (``--bands`` for ``input_bands``) fills the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["EngineOptions", "InputOptions"]


@dataclass(frozen=True, kw_only=True)
class InputOptions:
    """How products are read, the same in every command."""

    input_bands: tuple[str, ...] | None = None
    """Band names of GeoTIFF inputs in file order, when the files do not describe them (CLI ``--bands``)."""
    scale: float | None = None
    """GeoTIFF inputs: reflectance = DN * scale + offset (default 1e-4)."""
    offset: float | None = None
    """GeoTIFF input offset (default 0)."""
    resolution: int | None = None
    """Grid (m) the products are read at; default their own: 10 m for SAFE and STAC, a GeoTIFF's pixel size."""
    resampling: str = "nearest"
    """How 20/60 m bands reach the grid: ``nearest`` (as in every reader) or ``bilinear``."""
    chunks: int = 1024
    """Block size (px) of the lazy cubes, of the model's output and of a composite; bounds memory
    (a composite holds about threads x scenes x bands x chunks**2 x 12 bytes)."""

    def read_kwargs(self) -> dict[str, Any]:
        """These options as the keyword arguments of :func:`s2mask.io.product.open_product`."""
        return {
            "resolution": self.resolution,
            "resampling": self.resampling,
            "chunks": self.chunks,
            "scale": self.scale,
            "offset": self.offset,
            "band_names": self.input_bands,
        }


@dataclass(frozen=True, kw_only=True)
class EngineOptions:
    """How the model runs over a cube, the same in every command."""

    window: int | None = None
    """Window size in px (default: the model card's)."""
    overlap: int | None = None
    """Overlap between windows in px (default: window // 8)."""
    batch_size: int = 4
    """Windows per model call."""

    def predict_kwargs(self) -> dict[str, Any]:
        """These options as the keyword arguments of :func:`s2mask.engine.predict`."""
        return {"window": self.window, "overlap": self.overlap, "batch_size": self.batch_size}
