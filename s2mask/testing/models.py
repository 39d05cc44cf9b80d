"""Small deterministic models that follow the engine's model protocol.

The protocol (see ``s2mask.model.LoadedModel``): attributes ``bands`` and
``num_classes`` and ``predict_proba(batch)`` mapping reflectance ``(N, C, H, W)``
to probabilities ``(N, K, H, W)``.
"""

from __future__ import annotations

import numpy as np
import torch

from s2mask.bands import DEFAULT_BANDS
from s2mask.model.weights import LoadedModel, ModelCard, build_model

__all__ = ["ThresholdModel", "tiny_unet"]


class ThresholdModel:
    """Rule-based stand-in: bright pixels are cloud, dark pixels shadow, the rest clear.

    Per pixel, so its mask does not depend on windows; probabilities are smooth
    functions of the mean reflectance so blending is exercised.
    """

    def __init__(self, bands: tuple[str, ...] = DEFAULT_BANDS, cloud: float = 0.3, shadow: float = 0.04) -> None:
        self.bands, self.num_classes = tuple(bands), 3
        self.cloud, self.shadow = cloud, shadow
        self.calls = 0

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        x = np.nan_to_num(np.asarray(batch, dtype=np.float32)).mean(axis=1)
        logits = np.stack([np.zeros_like(x), (x - self.cloud) * 50.0, (self.shadow - x) * 50.0], axis=1)
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def tiny_unet(bands: tuple[str, ...] = DEFAULT_BANDS, *, width: int = 4, seed: int = 0,
              window_size: int = 64) -> LoadedModel:
    """A randomly initialised (seeded) U-Net on CPU: spatial context, deterministic output."""
    card = ModelCard(name="tiny", bands=tuple(bands), width=width, window_size=window_size,
                     training_data="none (random weights for tests)")
    torch.manual_seed(seed)
    net = build_model(card)
    with torch.no_grad():  # give BatchNorm non-trivial running stats so outputs vary
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return LoadedModel(net, card, device="cpu")
