"""Segmentation metrics from a confusion matrix: pixel accuracy, macro F1, macro IoU."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.labels import IGNORE

__all__ = ["Metrics", "confusion_matrix", "metrics_from_confusion", "format_table"]


def confusion_matrix(y_true, y_pred, num_classes: int, *, ignore_index: int = IGNORE) -> np.ndarray:
    """``(K, K)`` int64 counts, rows = reference class, columns = predicted class.

    Pixels whose reference is ``ignore_index`` (or outside ``0..K-1``) are skipped; a
    prediction outside ``0..K-1`` on a valid pixel is an error.
    """
    t = np.asarray(y_true).astype(np.int64).ravel()
    p = np.asarray(y_pred).astype(np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"Reference and prediction differ in size ({t.size} vs {p.size} pixels).")
    keep = (t != ignore_index) & (t >= 0) & (t < num_classes)
    t, p = t[keep], p[keep]
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"Predictions hold classes outside 0..{num_classes - 1}.")
    return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


@dataclass(frozen=True)
class Metrics:
    """Accuracy figures of one evaluation."""

    accuracy: float
    """Pixel accuracy over non-ignored pixels."""
    macro_f1: float
    """Mean F1 over the classes present in the reference or the prediction."""
    macro_iou: float
    """Mean IoU over the classes present in the reference or the prediction."""
    per_class_iou: dict[str, float]
    """IoU per class name (NaN when a class is absent from both)."""
    per_class_f1: dict[str, float]
    """F1 per class name."""
    confusion: list[list[int]]
    """Confusion matrix, rows reference, columns prediction."""
    pixels: int
    """Number of evaluated pixels."""

    def to_dict(self) -> dict:
        clean = lambda v: None if v != v else round(float(v), 6)  # noqa: E731 - NaN -> null
        return {
            "accuracy": clean(self.accuracy),
            "macro_f1": clean(self.macro_f1),
            "macro_iou": clean(self.macro_iou),
            "per_class_iou": {k: clean(v) for k, v in self.per_class_iou.items()},
            "per_class_f1": {k: clean(v) for k, v in self.per_class_f1.items()},
            "confusion": self.confusion,
            "pixels": self.pixels,
        }


def metrics_from_confusion(cm: np.ndarray, classes: tuple[str, ...] | list[str]) -> Metrics:
    """Accuracy, per-class and macro F1 / IoU from a confusion matrix."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    ref, pred = cm.sum(1), cm.sum(0)
    union = ref + pred - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        f1 = np.where(ref + pred > 0, 2 * tp / (ref + pred), np.nan)
    total = cm.sum()
    acc = float(tp.sum() / total) if total else float("nan")
    present = union > 0
    return Metrics(
        accuracy=acc,
        macro_f1=float(np.mean(f1[present])) if present.any() else float("nan"),
        macro_iou=float(np.mean(iou[present])) if present.any() else float("nan"),
        per_class_iou={c: float(v) for c, v in zip(classes, iou, strict=False)},
        per_class_f1={c: float(v) for c, v in zip(classes, f1, strict=False)},
        confusion=cm.astype(np.int64).tolist(),
        pixels=int(total),
    )


def format_table(m: Metrics, classes: tuple[str, ...] | list[str]) -> str:
    """A plain-text table: the summary figures, per-class IoU/F1 and the confusion matrix."""
    lines = [
        f"pixel accuracy  {m.accuracy:.4f}",
        f"macro F1        {m.macro_f1:.4f}",
        f"macro IoU       {m.macro_iou:.4f}",
        f"pixels          {m.pixels}",
        "",
        f"{'class':<10}{'IoU':>8}{'F1':>8}",
    ]
    for c in classes:
        lines.append(f"{c:<10}{m.per_class_iou[c]:>8.4f}{m.per_class_f1[c]:>8.4f}")
    lines += [
        "",
        "confusion (rows reference, columns prediction)",
        " " * 10 + "".join(f"{c:>12}" for c in classes),
    ]
    for c, row in zip(classes, m.confusion, strict=False):
        lines.append(f"{c:<10}" + "".join(f"{v:>12d}" for v in row))
    return "\n".join(lines)
