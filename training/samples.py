"""PNG outputs of a training run: sample predictions and the training curve."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["rgb_image", "label_image", "save_samples", "plot_curve", "PALETTE"]

PALETTE = np.array([[40, 120, 40], [255, 255, 255], [90, 60, 160]], np.uint8)
"""Colours of clear, cloud and shadow; ignored pixels are black."""


def rgb_image(x: np.ndarray, bands: tuple[str, ...], *, gain: float = 3.5) -> np.ndarray:
    """(H, W, 3) uint8 true colour from B04, B03, B02 (grey from the first band if they are missing)."""
    idx = [bands.index(b) for b in ("B04", "B03", "B02") if b in bands]
    chans = x[idx] if len(idx) == 3 else np.repeat(x[:1], 3, axis=0)
    return (np.clip(np.nan_to_num(chans) * gain, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)


def label_image(y: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 colours of a label map; 255 and unknown values are black."""
    out = np.zeros((*y.shape, 3), np.uint8)
    for k, colour in enumerate(PALETTE):
        out[y == k] = colour
    return out


def _save_png(a: np.ndarray, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(a).save(tmp, format="PNG")
    tmp.replace(path)


def save_samples(
    out_dir: str | Path,
    images: list[np.ndarray],
    labels: list[np.ndarray],
    preds: list[np.ndarray],
    bands: tuple[str, ...],
) -> list[Path]:
    """Write ``input_<i>.png`` (RGB), ``gt_<i>.png`` and ``pred_<i>.png`` for each sample."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (x, y, p) in enumerate(zip(images, labels, preds, strict=False)):
        for stem, a in (("input", rgb_image(x, bands)), ("gt", label_image(y)), ("pred", label_image(p))):
            path = out / f"{stem}_{i}.png"
            _save_png(a, path)
            written.append(path)
    return written


def plot_curve(history: list[dict], path: str | Path) -> Path:
    """Training/validation loss and validation macro IoU / accuracy per epoch as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    ep = [h["epoch"] for h in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(ep, [h["train_loss"] for h in history], "o-", label="train loss")
    a1.plot(ep, [h["val_loss"] for h in history], "o-", label="validation loss")
    a1.set_xlabel("epoch"), a1.set_ylabel("cross-entropy"), a1.legend(), a1.grid(alpha=0.3)
    for key, lab in (
        ("val_macro_iou", "val macro IoU"),
        ("val_macro_f1", "val macro F1"),
        ("val_accuracy", "val accuracy"),
    ):
        a2.plot(ep, [h[key] for h in history], "o-", label=lab)
    a2.set_xlabel("epoch"), a2.set_ylim(0, 1), a2.legend(), a2.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    tmp.replace(path)
    return path
