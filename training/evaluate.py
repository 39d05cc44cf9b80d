"""Evaluate weights on a labelled dataset: accuracy, macro F1 / IoU, per-class IoU, confusion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from training.data import open_source
from training.metrics import Metrics, confusion_matrix, metrics_from_confusion

__all__ = ["evaluate", "predict_classes", "write_json"]


def predict_classes(model, image: np.ndarray) -> np.ndarray:
    """Class map (H, W) uint8 of one reflectance patch (C, H, W) with a loaded model."""
    probs = model.predict_proba(np.ascontiguousarray(image[None], dtype=np.float32))[0]
    return probs.argmax(0).astype(np.uint8)


def evaluate(
    weights: str | Path,
    data: str | Path,
    *,
    split: str = "test",
    filters=None,
    device: str = "auto",
    limit: int | None = None,
) -> Metrics:
    """Metrics of ``weights`` (shipped name, .safetensors or checkpoint) on ``split`` of ``data``.

    Whole patches are predicted (no cropping); pixels labelled 255 are skipped.
    """
    from s2mask.model import load_model

    model = load_model(weights, device=device)
    source = open_source(data, split=split, bands=tuple(model.bands), filters=filters)
    k = model.num_classes
    cm = np.zeros((k, k), np.int64)
    n = len(source) if limit is None else min(limit, len(source))
    for i in range(n):
        x, y = source[i]
        cm += confusion_matrix(y, predict_classes(model, x), k)
    return metrics_from_confusion(cm, tuple(model.card.classes))


def write_json(obj: dict, path: str | Path) -> Path:
    """Write ``obj`` as JSON via a temporary file renamed into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)
    return path
