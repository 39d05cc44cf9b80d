"""Cloud-free composites from a time series of scenes and their masks.

The data flow::

    result = composite(cubes, masks, method="median", buffer=2)   # lazy xr.Dataset
    write_composite(result, "composite.tif")                     # uint16 COG, nodata 0

``composite_products`` does the same from product paths (masks reused or computed by the engine).
"""

from s2mask.composite.buffer import dilate_mask, dilate_mask_block
from s2mask.composite.core import ORDERS, REFLECTANCE_SCALE, SOURCE_NODATA, composite, layer_names, to_uint16
from s2mask.composite.grid import Grid, target_grid, to_grid
from s2mask.composite.methods import (
    BestPixelMethod,
    CompositeMethod,
    FirstMethod,
    GeomedianMethod,
    MeanMethod,
    MedianMethod,
    MedoidMethod,
    Method,
    PercentileMethod,
    get_method,
)
from s2mask.composite.products import (
    CompositeOptions,
    CompositeRun,
    composite_products,
    composite_stac,
    composite_tags,
    write_composite,
)

__all__ = [
    "ORDERS",
    "REFLECTANCE_SCALE",
    "SOURCE_NODATA",
    "BestPixelMethod",
    "CompositeMethod",
    "CompositeOptions",
    "CompositeRun",
    "FirstMethod",
    "GeomedianMethod",
    "Grid",
    "MeanMethod",
    "MedianMethod",
    "MedoidMethod",
    "Method",
    "PercentileMethod",
    "composite",
    "composite_products",
    "composite_stac",
    "composite_tags",
    "dilate_mask",
    "dilate_mask_block",
    "get_method",
    "layer_names",
    "target_grid",
    "to_grid",
    "to_uint16",
    "write_composite",
]
