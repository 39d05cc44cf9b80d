import json

import numpy as np
import pytest
import torch

from s2mask.errors import DeviceError, WeightsError
from s2mask.model import ModelCard, Normalization, UNet, build_model, load_model, normalize, save_model
from s2mask.model.device import resolve_device


def test_unet_shapes_any_size():
    net = UNet(9, 3, width=4).eval()
    for h, w in [(64, 64), (50, 77), (17, 33)]:
        assert net(torch.rand(1, 9, h, w)).shape == (1, 3, h, w)


def test_unet_has_four_levels_with_batchnorm():
    net = UNet(9, 3, width=8)
    assert len(net.downs) == 4 and len(net.ups) == 4
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


def test_save_load_roundtrip_keeps_card_and_outputs(tmp_path):
    card = ModelCard(name="t", bands=("B02", "B03", "B04", "B08"), width=4, metrics={"miou": 0.5})
    torch.manual_seed(1)
    net = build_model(card).eval()
    path = save_model(net, card, tmp_path / "m.safetensors")
    loaded = load_model(path, device="cpu", precision="fp32")
    assert loaded.card == card
    x = np.random.default_rng(0).random((2, 4, 32, 32), dtype=np.float32)
    expected = torch.softmax(net(torch.from_numpy(x)), 1).detach().numpy()
    np.testing.assert_allclose(loaded.predict_proba(x), expected, atol=1e-5)


def test_checkpoint_pth_with_card(tmp_path):
    card = ModelCard(name="t", bands=("B02", "B03", "B04"), width=4)
    net = build_model(card)
    torch.save({"model": net.state_dict(), "card": card.to_dict()}, tmp_path / "best_model.pth")
    assert load_model(tmp_path / "best_model.pth", device="cpu").card.bands == ("B02", "B03", "B04")


def test_corrupt_weights_clear_error(tmp_path):
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(WeightsError, match="corrupt"):
        load_model(bad, device="cpu")


def test_truncated_weights_clear_error(tmp_path):
    card = ModelCard(name="t", bands=("B02",), width=4)
    path = save_model(build_model(card), card, tmp_path / "m.safetensors")
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(WeightsError):
        load_model(path, device="cpu")


def test_unknown_model_name():
    with pytest.raises(WeightsError, match="Unknown model name"):
        load_model("no-such-model", device="cpu")


def test_card_json_is_plain():
    card = ModelCard(name="t", bands=("B02", "B03"), normalization=Normalization("standardize", (0.1, 0.2), (1, 2)))
    assert ModelCard.from_dict(json.loads(json.dumps(card.to_dict()))) == card


def test_normalize_nan_and_clip():
    x = np.array([[[np.nan, 2.0], [-1.0, 0.5]]], dtype=np.float32)
    np.testing.assert_array_equal(normalize(x), [[[0.0, 1.0], [0.0, 0.5]]])


def test_cuda_requested_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(DeviceError, match="CUDA"):
        resolve_device("cuda")


def test_auto_device_is_available():
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
