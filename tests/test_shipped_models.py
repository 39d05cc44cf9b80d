"""The models that ship inside the package: cards, size, and behaviour on real imagery."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from rio_cogeo.cogeo import cog_validate

from s2mask.bands import BAND_NAMES
from s2mask.engine import predict
from s2mask.mask import to_mask
from s2mask.model import load_model, shipped_models
from s2mask.testing.products import write_safe
from tests.conftest import need

ROOT = Path(__file__).resolve().parents[1]


def test_both_models_ship_under_100_mb_with_complete_cards():
    models = shipped_models()
    assert {"s2-9", "rgbn"} <= set(models)
    assert sum(p.stat().st_size for p in models.values()) < 100e6
    expected = {
        "s2-9": ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12"),
        "rgbn": ("B02", "B03", "B04", "B08"),
    }
    for name, bands in expected.items():
        card = load_model(name, device="cpu").card
        assert card.bands == bands and card.classes == ("clear", "cloud", "shadow")
        assert "synthetic" in card.training_data.lower() and "train" in card.command
        assert card.metrics["real_scenes"], "the card must carry the accuracy measured on real scenes"


@pytest.mark.parametrize("name", ["s2-9", "rgbn"])
def test_cloud_class_agrees_with_s2cloudless_on_rows_training_never_saw(shared_data, name):
    """Scored on the held-out rows only: rows 0-427 of this scene are training backgrounds.

    On the whole scene the shipped models reach IoU 0.66 / 0.61, on the held-out rows
    0.42 / 0.49 (what their cards record); the rows they were trained on made the old
    whole-scene threshold of 0.5 pass.
    """
    from training.real_scenes import S2CLOUDLESS_HELDOUT_ROW as HELDOUT

    npz = np.load(need(shared_data / "s2cloudless_testscene" / "input_arrays.npz"))
    img = np.moveaxis(npz["s2_im"][0], -1, 0)  # (13, 856, 512) L1C reflectance
    reference = npz["cl_mask"][0].astype(bool)[HELDOUT:]
    cube = xr.DataArray(img, dims=("band", "y", "x"), coords={"band": list(BAND_NAMES)}).chunk(
        {"y": 512, "x": 512}
    )
    model = load_model(name, device="cpu", precision="fp32")  # cards are measured at fp32
    mask = to_mask(predict(cube, model)).values[HELDOUT:]
    cloud = mask == 1
    iou = (cloud & reference).sum() / (cloud | reference).sum()
    everything_cloud = reference.mean()  # the IoU of calling every pixel cloud
    assert iou > everything_cloud + 0.03, (
        f"{name}: held-out cloud IoU {iou:.3f} vs {everything_cloud:.3f} for all-cloud"
    )
    # the card states the held-out figure, measured by the training code; this run must reproduce it
    assert iou == pytest.approx(
        model.card.metrics["real_scenes"]["s2cloudless"]["cloud_iou_heldout_rows"], abs=0.005
    )
    # shadows lie beside clouds, not scattered over the scene (this is a cumulus scene: the
    # ukis-csmask teacher calls 7 % of these rows shadow)
    from scipy import ndimage

    shadow = mask == 2
    assert 0 < shadow.mean() < 0.25
    assert (shadow & ndimage.binary_dilation(cloud, iterations=60)).sum() > 0.9 * shadow.sum()


def test_api_example_masks_a_product_with_the_default_model(tmp_path, shared_data):
    npz = np.load(need(shared_data / "s2cloudless_testscene" / "input_arrays.npz"))
    refl = np.moveaxis(npz["s2_im"][0][:240, :240], -1, 0)
    product = write_safe(tmp_path, refl, level="L1C", baseline="05.09")
    out = tmp_path / "mask.tif"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "mask_product.py"), str(product), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert cog_validate(str(out), quiet=True)[0]
    with rasterio.open(out) as src:
        assert src.shape == (240, 240) and set(np.unique(src.read(1))) <= {0, 1, 2, 255}
    assert "fractions" in proc.stdout
