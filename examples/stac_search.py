"""Search a STAC API, open one scene lazily and mask it, with the Python API.

    python examples/stac_search.py https://earth-search.aws.element84.com/v1 11.0,46.0,11.3,46.2 2024-06

Needs network access to the API and its assets.
"""

from __future__ import annotations

import sys

import s2mask
from s2mask.io.stac import open_stac_item, search_items
from s2mask.params import parse_bbox, parse_date_range


def main(url: str, bbox: str, date: str) -> None:
    box, dates = parse_bbox(bbox), parse_date_range(date)
    items = search_items(url=url, collection="sentinel-2-l2a", bbox=box, date=dates, max_cloud=60, limit=5)
    print(f"{len(items)} items:", ", ".join(i.id for i in items))
    model = s2mask.load_model("s2-9")
    cube = open_stac_item(items[0], bands=model.bands, bbox=box)  # radiometry from the item's metadata
    mask = s2mask.to_mask(s2mask.predict(cube, model))
    s2mask.write_mask(mask, f"{items[0].id}_mask.tif", overwrite=True)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
