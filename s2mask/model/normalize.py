"""The one normalisation shared by inference and training.

Reflectance in [0, 1] (already ``(DN + offset) / quantification`` and clipped) is
turned into the model's input.  The method and its statistics live in the model
card, so a model always sees its inputs exactly as it was trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Normalization", "normalize", "to_reflectance", "fill_nodata"]


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


def fill_nodata(x: np.ndarray) -> np.ndarray:
    """Replace nodata (NaN) in ``x`` (..., C, H, W) by the nearest valid pixel of the same image.

    Nodata must not look like anything the model knows: filled with 0 it is black, and
    black beside real ground looks like cloud shadow.  Filled with the nearest real
    pixel it continues the ground across the edge, so pixels beside a swath edge or a
    nodata corner see ordinary ground.  An image with no valid pixel becomes 0.  A
    pixel with some bands NaN takes 0 in those bands.  Inference (the engine's model
    call) and training (:class:`training.data.PatchDataset`) both go through here.
    """
    x = np.asarray(x, dtype=np.float32)
    if not np.isnan(x).any():
        return x
    from scipy import ndimage

    out = x.copy()
    flat = out.reshape((-1,) + x.shape[-3:])
    for img in flat:
        invalid = np.isnan(img).all(axis=0)
        if invalid.all():
            img[:] = 0.0
            continue
        if invalid.any():
            iy, ix = ndimage.distance_transform_edt(invalid, return_distances=False, return_indices=True)
            img[:] = img[:, iy, ix]
        np.nan_to_num(img, copy=False, nan=0.0)
    return out


def normalize(x: np.ndarray, norm: Normalization | None = None, *, band_axis: int = -3) -> np.ndarray:
    """Map reflectance ``x`` (bands on ``band_axis``) to model input.

    Nodata (NaN) is filled by :func:`fill_nodata` (nearest valid pixel).  Works on
    numpy arrays and torch tensors alike.
    """
    norm = norm or Normalization()
    if hasattr(x, "nan_to_num"):  # torch.Tensor
        if bool(x.isnan().any()):
            import torch

            x = torch.from_numpy(fill_nodata(x.detach().cpu().numpy())).to(x.device)
        x = x.clamp(0.0, 1.0)
    else:
        x = np.clip(fill_nodata(x), 0.0, 1.0)
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
