"""A cloud-free median composite of several products with the Python API.

    python examples/composite.py out/composite.tif a.SAFE b.SAFE c.SAFE

Masks are computed with the shipped default model; pass ``masks=[...]`` to reuse
existing s2mask mask COGs instead.
"""

from __future__ import annotations

import sys

from s2mask.composite import CompositeOptions, composite_products
from s2mask.model import load_model


def main(out: str, products: list[str]) -> None:
    model = load_model("s2-9")
    options = CompositeOptions(method="median", buffer=2, overwrite=True, progress=True)
    run = composite_products(products, out, model=model, options=options)
    print(f"{run.cog} from {len(run.scenes)} scenes in {run.seconds:.1f} s; quick-look {run.quicklook}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
