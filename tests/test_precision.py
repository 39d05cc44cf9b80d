"""Reduced precision: bf16 on CPUs with bf16 units, masks within tolerance of fp32 on real pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from s2mask.errors import InvalidParameterError
from s2mask.model import load_model
from s2mask.model.device import cpu_has_fast_bf16, resolve_precision


def test_precision_choice() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("BF16", cpu) == "bf16"
    assert resolve_precision("auto", cpu) == ("bf16" if cpu_has_fast_bf16() else "fp32")
    assert resolve_precision("auto", torch.device("cuda")) == "fp32"  # CUDA has its own autocast
    with pytest.raises(InvalidParameterError, match="fp16"):
        resolve_precision("fp16", cpu)
    # the library default is auto, so local runs and cluster workers compute alike
    assert load_model("rgbn", device="cpu", runtime="torch").precision == resolve_precision("auto", cpu)
    assert load_model("rgbn", device="cpu", precision="fp32").precision == "fp32"


@pytest.mark.parametrize("name", ["s2-9", "rgbn"])
def test_bf16_masks_agree_with_fp32_on_a_real_scene(shared_data: Path, name: str) -> None:
    from training.real_scenes import approximate_bands, predict_array

    with np.load(shared_data / "s2cloudless_testscene" / "input_arrays.npz") as d:
        img = d["s2_im"][0, 300:556, :256]
    esa = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
    have = {b: np.ascontiguousarray(img[..., i]) for i, b in enumerate(esa)}
    exact = load_model(name, device="cpu", precision="fp32")
    fast = load_model(name, device="cpu", precision="bf16")
    x, _ = approximate_bands(have, exact.bands)
    p32, p16 = exact.predict_proba(x[None])[0], fast.predict_proba(x[None])[0]
    assert np.abs(p32 - p16).max() < 0.2 and np.abs(p32 - p16).mean() < 0.01
    a, b = predict_array(exact, x), predict_array(fast, x)
    assert (a == b).mean() > 0.99
    assert len(np.unique(a)) >= 2  # the crop holds cloud and clear: agreement is not trivial


def test_cli_precision_reaches_the_model(shared_data: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    import rasterio

    from s2mask.model import weights as weights_module
    from tests.reliability_helpers import run_main

    scene = shared_data / "sen12mscr_nigeria" / "ROIs1868_summer_s2_cloudy_19_p30.tif"
    seen: list[str] = []
    real_init = weights_module.LoadedModel.__init__

    def spy(self, *a, **kw):  # noqa: ANN001, ANN002, ANN003
        real_init(self, *a, **kw)
        seen.append(self.precision)

    monkeypatch.setattr(weights_module.LoadedModel, "__init__", spy)
    masks = {}
    for prec in ("fp32", "bf16"):
        out = tmp_path / f"{prec}.tif"
        bands = "B01,B02,B03,B04,B05,B06,B07,B08,B8A,B09,B10,B11,B12"
        res = run_main(
            ["run", scene, "-o", out, "--bands", bands, "--precision", prec, "--quiet"], monkeypatch, capsys
        )
        assert res.code == 0, res
        with rasterio.open(out) as src:
            masks[prec] = src.read(1)
    assert seen == ["fp32", "bf16"]
    assert (masks["fp32"] == masks["bf16"]).mean() > 0.99 and (masks["fp32"] == 1).mean() > 0.02
