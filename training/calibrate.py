"""Calibrate the shadow class of a trained model on validation data: one logit offset.

A student trained with a heavy shadow weight (or on blurred teacher shadows) can call too
much or too little shadow.  :func:`calibrate_shadow` tries offsets added to the shadow
logit on the *validation* split, keeps the one with the best macro IoU (ties within 0.001
go to the predicted/reference shadow area nearest 1) and writes a checkpoint with the
offset folded into the head's bias, so no engine code changes.  The chosen offset and the
sweep are recorded in the card's metrics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from s2mask.model import ModelCard, build_model
from training.data import PatchDataset, open_source
from training.loop import evaluate_net
from training.metrics import metrics_from_confusion

__all__ = ["calibrate_shadow", "OFFSETS"]

OFFSETS = (-1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0)
SHADOW = 2


def calibrate_shadow(
    checkpoint: str | Path, data: str, out: str | Path, *, offsets=OFFSETS, crop: int = 128
) -> dict:
    """Sweep ``offsets`` on ``data``'s validation split; write the calibrated checkpoint to ``out``."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    card = ModelCard.from_dict(ckpt["card"])
    net = build_model(card)
    net.load_state_dict(ckpt["model"])
    src = open_source(data, split="validation", bands=card.bands)
    dl = torch.utils.data.DataLoader(PatchDataset(src, crop=crop, train=False), batch_size=16)
    bias = net.head.bias.detach().clone()
    sweep = []
    for off in offsets:
        with torch.no_grad():
            net.head.bias.copy_(bias)
            net.head.bias[SHADOW] += off
        cm, _ = evaluate_net(net, dl, len(card.classes), torch.device("cpu"))
        m = metrics_from_confusion(cm, card.classes)
        area = float(cm[:, SHADOW].sum() / max(1, cm[SHADOW].sum()))
        sweep.append(
            {"offset": off, "macro_iou": m.macro_iou, "shadow_iou": m.per_class_iou["shadow"], "area": area}
        )
    top = max(s["macro_iou"] for s in sweep)
    best = min(
        (s for s in sweep if s["macro_iou"] >= top - 0.001), key=lambda s: abs(np.log(max(s["area"], 1e-6)))
    )
    with torch.no_grad():
        net.head.bias.copy_(bias)
        net.head.bias[SHADOW] += best["offset"]
    result = {"shadow_logit_offset": best["offset"], "data": data, "split": "validation", "sweep": sweep}
    metrics = dict(ckpt.get("metrics") or {})
    torch.save(
        {"model": net.state_dict(), "card": card.to_dict(), "epoch": ckpt.get("epoch"),
         "metrics": metrics, "calibration": result},
        out,
    )  # fmt: skip
    return result
