"""Turn a training checkpoint into a ``.safetensors`` model file with its card.

:func:`ship_model` is how the package's own models were made: it measures the
checkpoint on the real labelled scenes of ``../shared/data``, adds those figures and
the run's held-out test metrics to the card, and writes ``s2mask/models/<name>.safetensors``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from s2mask.model import LoadedModel, ModelCard, build_model, save_model

__all__ = ["export_weights", "ship_model"]


def _load(checkpoint: str | Path) -> tuple[torch.nn.Module, ModelCard]:
    ckpt = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
    card = ModelCard.from_dict(ckpt["card"])
    net = build_model(card)
    net.load_state_dict(ckpt["model"])
    return net, card


def export_weights(checkpoint: str | Path, path: str | Path, **card_updates: Any) -> Path:
    """Write the weights of ``checkpoint`` and its card (updated with ``card_updates``) to ``path``."""
    net, card = _load(checkpoint)
    if card_updates:
        card = replace(card, **card_updates)
    return save_model(net, card, path)


def ship_model(
    checkpoint: str | Path,
    path: str | Path,
    *,
    shared_data: str | Path,
    command: str,
    test_metrics: str | Path | None = None,
    note: str = "",
) -> tuple[Path, dict]:
    """Export ``checkpoint`` to ``path`` with measured metrics and the producing ``command`` in its card."""
    from training.real_scenes import evaluate_real_scenes

    net, card = _load(checkpoint)
    real = evaluate_real_scenes(LoadedModel(net, card, device="cpu"), shared_data)
    metrics: dict[str, Any] = {"real_scenes": real}
    calibration = torch.load(str(checkpoint), map_location="cpu", weights_only=True).get("calibration")
    if calibration:
        metrics["calibration"] = calibration
    if test_metrics and Path(test_metrics).exists():
        metrics["synthetic_test"] = json.loads(Path(test_metrics).read_text())
    if note:
        metrics["note"] = note
    card = replace(card, command=command, metrics=metrics)
    return save_model(net, card, path), metrics
