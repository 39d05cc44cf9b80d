"""Readers (and, in sibling modules, writers) of Sentinel-2 products.

Every reader returns the same contract: a lazy dask-backed float32 reflectance
``xr.DataArray`` with dims ``("band", "y", "x")``, ESA band names, CRS and transform
attached and attrs ``product_id``, ``level``, ``processing_baseline``, ``source``.
"""

from s2mask.io.geotiff import open_geotiff
from s2mask.io.product import open_product, product_kind, read_preview
from s2mask.io.safe import open_safe

__all__ = ["open_product", "open_safe", "open_geotiff", "product_kind", "read_preview"]
