"""Model: architecture, normalisation, weights with cards, devices and runtimes.

``load_model`` chooses where a model runs (torch, or OpenVINO / ONNX Runtime for the int8
model; :mod:`s2mask.model.runtime`).  Names that need torch (``UNet``, ``LoadedModel``,
``build_model``, ``save_model``, ``resolve_device``, ``set_threads``) are imported on first
use, so code that only runs the int8 model never loads torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from s2mask.model.card import CLASSES, ModelCard
from s2mask.model.normalize import Normalization, normalize, to_reflectance
from s2mask.model.runtime import OnnxModel, load_model, shipped_models

if TYPE_CHECKING:
    from s2mask.model.device import resolve_device, set_threads
    from s2mask.model.unet import UNet
    from s2mask.model.weights import LoadedModel, build_model, save_model

__all__ = [
    "CLASSES",
    "LoadedModel",
    "ModelCard",
    "Normalization",
    "OnnxModel",
    "UNet",
    "build_model",
    "load_model",
    "normalize",
    "resolve_device",
    "save_model",
    "set_threads",
    "shipped_models",
    "to_reflectance",
]

_LAZY = {
    "LoadedModel": "s2mask.model.weights",
    "build_model": "s2mask.model.weights",
    "save_model": "s2mask.model.weights",
    "UNet": "s2mask.model.unet",
    "resolve_device": "s2mask.model.device",
    "set_threads": "s2mask.model.device",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 's2mask.model' has no attribute {name!r}")
