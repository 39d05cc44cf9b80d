"""Mask a Sentinel-2 product with the Python API, step by step.

    python examples/mask_product.py demo/S2B_MSIL1C_...SAFE out/mask.tif

The same as ``s2mask run PRODUCT -o OUT``, written as the library's data flow.
"""

from __future__ import annotations

import sys

import s2mask


def main(product: str, out: str) -> None:
    model = s2mask.load_model("s2-9", device="auto")        # weights + card (bands, classes, ...)
    cube = s2mask.open_product(product, bands=model.bands)  # lazy dask-backed ("band", "y", "x")
    print(cube)
    probs = s2mask.predict(cube, model, batch_size=8)       # blended class probabilities, lazy
    mask = s2mask.to_mask(probs)                            # uint8 0 clear, 1 cloud, 2 shadow, 255 nodata
    s2mask.write_mask(mask, out, overwrite=True)                  # COG: colour table, MODE overviews
    print(s2mask.mask_summary(mask))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
