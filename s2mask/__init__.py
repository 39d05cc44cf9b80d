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
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # what IDEs and type checkers see; at run time the names resolve lazily
    from s2mask.composite import CompositeOptions, composite, composite_products, composite_stac
    from s2mask.engine import WindowGrid, predict, predict_array
    from s2mask.engine.cluster import ModelRef, connect
    from s2mask.errors import S2MaskError
    from s2mask.io.product import open_product
    from s2mask.io.stac import open_stac_item, search_items
    from s2mask.mask import class_fractions, to_mask
    from s2mask.model import ModelCard, load_model, save_model, shipped_models
    from s2mask.params import parse_bbox, parse_date_range
    from s2mask.quicklook import write_quicklook
    from s2mask.run import RunOptions, run_many, run_product
    from s2mask.stac import run_stac
    from s2mask.summary import mask_summary, write_summary
    from s2mask.writers import write_cog, write_mask, write_probabilities


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
    "write_cog": "s2mask.writers",
    "write_mask": "s2mask.writers",
    "write_probabilities": "s2mask.writers",
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

__all__ = [
    "__version__",
    "S2MaskError",
    "ModelCard",
    "load_model",
    "save_model",
    "shipped_models",
    "open_product",
    "open_stac_item",
    "search_items",
    "predict",
    "predict_array",
    "WindowGrid",
    "ModelRef",
    "connect",
    "class_fractions",
    "to_mask",
    "write_cog",
    "write_mask",
    "write_probabilities",
    "write_summary",
    "run_stac",
    "parse_bbox",
    "parse_date_range",
    "write_quicklook",
    "mask_summary",
    "run_product",
    "run_many",
    "RunOptions",
    "composite",
    "composite_products",
    "composite_stac",
    "CompositeOptions",
]
"""Listed literally so IDEs and type checkers see them (``tests/test_api.py`` keeps it equal to ``_EXPORTS``)."""


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 's2mask' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
