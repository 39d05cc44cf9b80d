"""The same scene as an L2A product of baseline 05.09 (offset -1000) and 03.01 (no offset) gives one mask."""

from __future__ import annotations

import numpy as np
import rasterio

from s2mask.model import load_model
from s2mask.run import RunOptions, run_product
from s2mask.testing.products import write_safe
from tests.reliability_helpers import save_threshold_weights, scene


def test_l2a_baseline_0509_and_0301_give_the_same_mask(tmp_path):
    refl = scene()
    new = write_safe(tmp_path / "new", refl, level="L2A", baseline="05.09")
    old = write_safe(tmp_path / "old", refl, level="L2A", baseline="03.01")
    with (
        rasterio.open(next(new.rglob("*_B02_10m.jp2"))) as a,
        rasterio.open(next(old.rglob("*_B02_10m.jp2"))) as b,
    ):
        assert int(a.read(1)[0, 0]) - int(b.read(1)[0, 0]) == 1000  # the DN really differ
    model = load_model(save_threshold_weights(tmp_path / "w.safetensors"), device="cpu")
    opts = RunOptions(quicklook=False, summary=False, progress=False)
    masks = []
    for product, name in ((new, "new.tif"), (old, "old.tif")):
        run_product(product, tmp_path / name, model=model, options=opts)
        with rasterio.open(tmp_path / name) as src:
            masks.append(src.read(1))
    np.testing.assert_array_equal(masks[0], masks[1])
    assert set(np.unique(masks[0])) == {0, 1, 2}  # the scene's cloud and shadow are found in both
