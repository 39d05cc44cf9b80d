"""The one normalisation shared by inference and training.

Reflectance in [0, 1] (already ``(DN + offset) / quantification`` and clipped) is
turned into the model's input.  The method and its statistics live in the model
card, so a model always sees its inputs exactly as it was trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Normalization", "normalize", "to_reflectance"]


@dataclass(frozen=True)
class Normalization:
    """How reflectance becomes model input."""

    method: str = "clip"
    """``"clip"``: reflectance clipped to [0, 1] (the seed's choice); ``"standardize"``: (x - mean) / std."""
    mean: tuple[float, ...] = field(default_factory=tuple)
    """Per-band mean for ``standardize``."""
    std: tuple[float, ...] = field(default_factory=tuple)
    """Per-band standard deviation for ``standardize``."""

    def to_dict(self) -> dict:
        return {"method": self.method, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> Normalization:
        return cls(d.get("method", "clip"), tuple(d.get("mean", ())), tuple(d.get("std", ())))


def to_reflectance(dn: np.ndarray, *, scale: float = 1e-4, offset: float = 0.0) -> np.ndarray:
    """DN to reflectance: ``(DN * scale) + offset`` clipped to [0, 1], float32.

    For Sentinel-2 ``scale = 1 / quantification`` and ``offset = add_offset / quantification``.
    """
    out = np.asarray(dn, dtype=np.float32) * np.float32(scale) + np.float32(offset)
    return np.clip(out, 0.0, 1.0, out=out)


def normalize(x: np.ndarray, norm: Normalization | None = None, *, band_axis: int = -3) -> np.ndarray:
    """Map reflectance ``x`` (bands on ``band_axis``) to model input; NaN becomes 0.

    Works on numpy arrays and torch tensors alike (only arithmetic is used).
    """
    norm = norm or Normalization()
    if hasattr(x, "nan_to_num"):  # torch.Tensor
        x = x.nan_to_num(0.0).clamp(0.0, 1.0)
    else:
        x = np.clip(np.nan_to_num(np.asarray(x, dtype=np.float32), nan=0.0), 0.0, 1.0)
    if norm.method == "clip":
        return x
    if norm.method == "standardize":
        shape = [1] * x.ndim
        shape[band_axis] = -1
        mean = np.asarray(norm.mean, dtype=np.float32).reshape(shape)
        std = np.asarray(norm.std, dtype=np.float32).reshape(shape)
        if hasattr(x, "nan_to_num"):
            import torch

            mean, std = torch.as_tensor(mean, device=x.device), torch.as_tensor(std, device=x.device)
        return (x - mean) / std
    raise ValueError(f"Unknown normalisation method {norm.method!r}; expected 'clip' or 'standardize'.")
