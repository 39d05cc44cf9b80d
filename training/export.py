"""Turn a training checkpoint into a ``.safetensors`` model file with its card."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from s2mask.model import ModelCard, build_model, save_model

__all__ = ["export_weights"]


def export_weights(checkpoint: str | Path, path: str | Path, **card_updates: Any) -> Path:
    """Write the weights of ``checkpoint`` and its card (updated with ``card_updates``) to ``path``."""
    ckpt = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
    card = ModelCard.from_dict(ckpt["card"])
    if card_updates:
        card = replace(card, **card_updates)
    net = build_model(card)
    net.load_state_dict(ckpt["model"])
    return save_model(net, card, path)
