"""Model: architecture, normalisation, weights with cards, devices."""

from s2mask.model.device import resolve_device, set_threads
from s2mask.model.normalize import Normalization, normalize, to_reflectance
from s2mask.model.unet import UNet
from s2mask.model.weights import (
    CLASSES,
    LoadedModel,
    ModelCard,
    build_model,
    load_model,
    save_model,
    shipped_models,
)

__all__ = [
    "CLASSES",
    "LoadedModel",
    "ModelCard",
    "Normalization",
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
