"""Saving and loading model weights together with their card.

A model file is a ``.safetensors`` file whose metadata holds the card as plain
JSON, so loading one can never execute code.  Training checkpoints (``.pth``) are
read with ``torch.load(weights_only=True)`` and must carry a ``card`` entry.
Shipped models live in ``s2mask/models/<name>.safetensors``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from s2mask.errors import WeightsError
from s2mask.model.card import CLASSES, CardModel, ModelCard
from s2mask.model.device import resolve_device, resolve_precision
from s2mask.model.normalize import fill_nodata, normalize
from s2mask.model.unet import UNet

__all__ = [
    "CLASSES",
    "ModelCard",
    "LoadedModel",
    "build_model",
    "save_model",
    "load_torch_model",
]

def build_model(card: ModelCard) -> UNet:
    """A fresh (untrained) network shaped as ``card`` says."""
    if card.architecture != "unet4":
        raise WeightsError(f"Unknown architecture {card.architecture!r} in the model card; expected 'unet4'.")
    return UNet(len(card.bands), len(card.classes), card.width)


class LoadedModel(CardModel):
    """A network in eval mode on a device, with its card: the engine's model protocol.

    ``predict_proba`` takes reflectance ``(N, C, H, W)`` float32 (NaN allowed) in the
    card's band order and returns class probabilities ``(N, K, H, W)`` float32.
    """

    def __init__(
        self,
        net: torch.nn.Module,
        card: ModelCard,
        device: str | torch.device = "auto",
        precision: str = "fp32",
    ) -> None:
        self.card = card
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        """``fp32`` or ``bf16`` (CPU autocast); CUDA always runs under autocast."""
        self.runtime = "torch"
        self.net = net.to(self.device).eval()
        if self.device.type == "cpu":
            self.net = self.net.to(memory_format=torch.channels_last)

    def predict_proba(self, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        dev = self.device
        x = torch.as_tensor(fill_nodata(batch) if isinstance(batch, np.ndarray) else batch)
        # pinned host memory lets the copy to the GPU run asynchronously
        x = x.pin_memory().to(dev, non_blocking=True) if dev.type == "cuda" else x.to(dev)
        x = normalize(x, self.card.normalization)
        if dev.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if dev.type == "cuda":
                dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
                with torch.autocast("cuda", dtype=dtype):
                    logits = self.net(x)
            elif self.precision == "bf16":
                with torch.autocast(dev.type, dtype=torch.bfloat16):
                    logits = self.net(x)
            else:
                logits = self.net(x)
            probs = torch.softmax(logits.float(), dim=1)
        return probs.cpu().numpy()


def save_model(net: torch.nn.Module, card: ModelCard, path: str | Path) -> Path:
    """Write ``net``'s weights and ``card`` to one ``.safetensors`` file (atomically)."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(tmp), metadata={"card": json.dumps(card.to_dict())})
    tmp.chmod(0o644)
    tmp.replace(path)
    return path


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is not a mapping
    if "card" not in meta:
        raise WeightsError(f"{path} has no model card in its metadata; save weights with s2mask.save_model.")
    return state, json.loads(meta["card"])


def _read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "model" in obj and "card" in obj:
        card = obj["card"]
        return obj["model"], json.loads(card) if isinstance(card, str) else card
    sidecar = path.with_suffix(".json")
    if isinstance(obj, dict) and sidecar.exists():
        return obj, json.loads(sidecar.read_text())
    raise WeightsError(
        f"{path} holds no model card; expected a checkpoint written by s2mask train "
        f"or a sidecar {sidecar.name} with the card."
    )


def load_torch_model(
    path: str | Path,
    *,
    device: str | torch.device = "auto",
    precision: str = "auto",
    card_overrides: dict[str, Any] | None = None,
) -> LoadedModel:
    """The torch network of a weights file (``.safetensors`` or a training checkpoint).

    Use :func:`s2mask.model.load_model`, which also resolves shipped names and chooses the
    runtime.  ``precision``: ``auto`` (bf16 autocast where the CPU has bf16 units, AMX or
    AVX512-BF16, else fp32; :func:`s2mask.model.device.resolve_precision`), ``fp32`` or ``bf16``.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            state, card_dict = _read_safetensors(path)
        else:
            state, card_dict = _read_checkpoint(path)
    except WeightsError:
        raise
    except Exception as exc:  # corrupt, truncated, not a weights file
        raise WeightsError(
            f"Cannot read weights from {path} ({type(exc).__name__}: {exc}); "
            "the file is corrupt or not s2mask weights."
        ) from exc
    card = ModelCard.from_dict(card_dict)
    if card_overrides:
        card = replace(card, **card_overrides)
    net = build_model(card)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise WeightsError(f"The weights in {path} do not fit the network their card describes: {exc}") from exc
    return LoadedModel(net, card, device, precision)
