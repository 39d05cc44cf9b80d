"""s2mask: cloud and cloud-shadow masks and cloud-free composites for Sentinel-2.

The data flow::

    cube  = open_product("S2A_MSIL2A_....SAFE")     # lazy ("band", "y", "x") reflectance
    model = load_model("s2-9")                       # weights + card (bands, classes, normalisation)
    probs = predict(cube, model)                     # overlapping windows, blended probabilities
    mask  = to_mask(probs)                           # uint8: 0 clear, 1 cloud, 2 shadow, 255 nodata
    write_cog(mask, "mask.tif")

Public names are imported lazily so that ``import s2mask`` (and ``s2mask --help``) stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "S2MaskError": "s2mask.errors",
    "ModelCard": "s2mask.model",
    "load_model": "s2mask.model",
    "save_model": "s2mask.model",
    "shipped_models": "s2mask.model",
    "open_product": "s2mask.io.product",
    "open_stac_item": "s2mask.io.stac",
    "search_items": "s2mask.io.stac",
    "predict": "s2mask.engine",
    "predict_array": "s2mask.engine",
    "WindowGrid": "s2mask.engine",
    "ModelRef": "s2mask.engine.cluster",
    "connect": "s2mask.engine.cluster",
    "class_fractions": "s2mask.mask",
    "to_mask": "s2mask.mask",
    "write_cog": "s2mask.io.cog",
    "write_mask": "s2mask.io.cog",
    "write_probabilities": "s2mask.io.cog",
    "write_summary": "s2mask.summary",
    "run_stac": "s2mask.stac",
    "parse_bbox": "s2mask.params",
    "parse_date_range": "s2mask.params",
    "write_quicklook": "s2mask.quicklook",
    "mask_summary": "s2mask.summary",
    "run_product": "s2mask.run",
    "run_many": "s2mask.run",
    "RunOptions": "s2mask.run",
    "composite": "s2mask.composite",
    "composite_products": "s2mask.composite",
    "composite_stac": "s2mask.composite",
    "CompositeOptions": "s2mask.composite",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 's2mask' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
