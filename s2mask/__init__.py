"""s2mask: cloud and cloud-shadow masks and cloud-free composites for Sentinel-2.

The data flow::

    cube  = open_product("S2A_MSIL2A_....SAFE")     # lazy ("band", "y", "x") reflectance
    model = load_model("s2-9")                       # weights + card (bands, classes, normalisation)
    probs = predict(cube, model)                     # overlapping windows, blended probabilities
    mask  = to_mask(probs)                           # uint8: 0 clear, 1 cloud, 2 shadow, 255 nodata
    write_cog(mask, "mask.tif")
"""

__version__ = "0.1.0"

from s2mask.errors import S2MaskError  # noqa: E402
from s2mask.model import ModelCard, load_model, save_model  # noqa: E402

__all__ = ["__version__", "S2MaskError", "ModelCard", "load_model", "save_model"]
