"""A model's card: everything needed to use a set of weights correctly (no torch needed).

The card travels inside every model file (``.safetensors`` metadata, ONNX metadata) so a
model always sees its inputs as it was trained and reports what it was trained on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from s2mask import __version__
from s2mask.bands import resolve_bands
from s2mask.errors import WeightsError
from s2mask.model.normalize import Normalization

__all__ = ["CLASSES", "CardModel", "ModelCard", "model_info"]

CLASSES: tuple[str, ...] = ("clear", "cloud", "shadow")
"""Class names by index; 255 is nodata."""


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to use a set of weights correctly."""

    name: str
    """Short model name, e.g. ``"s2-9"``."""
    bands: tuple[str, ...]
    """ESA band names in the order the model expects them."""
    classes: tuple[str, ...] = CLASSES
    """Output class names by index."""
    normalization: Normalization = field(default_factory=Normalization)
    """How reflectance is turned into model input."""
    window_size: int = 256
    """Window size (px) the model was trained on; the engine's default window."""
    resolution: int = 10
    """Ground sampling distance (m) the model was trained at."""
    width: int = 16
    """U-Net first-level width."""
    architecture: str = "unet4"
    """Architecture name; only ``unet4`` exists."""
    training_data: str = ""
    """What the model was trained on."""
    levels: tuple[str, ...] = ("L1C", "L2A")
    """Processing levels the model was trained and evaluated on (one model serves both)."""
    command: str = ""
    """The exact command that produced the weights."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Measured accuracy (name -> value or nested dict)."""
    version: str = __version__
    """s2mask version that wrote the weights."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bands"], d["classes"], d["levels"] = list(self.bands), list(self.classes), list(self.levels)
        d["normalization"] = self.normalization.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCard:
        try:
            d = dict(d)
            d["bands"] = resolve_bands(list(d["bands"]))
            d["classes"] = tuple(d.get("classes", CLASSES))
            d["levels"] = tuple(d.get("levels", ("L1C", "L2A")))
            d["normalization"] = Normalization.from_dict(d.get("normalization", {}))
            known = {f for f in cls.__dataclass_fields__}
            return cls(**{k: v for k, v in d.items() if k in known})
        except (KeyError, TypeError, ValueError) as exc:
            raise WeightsError(
                f"The model card is invalid ({exc}); expected at least 'name' and 'bands'."
            ) from exc


def model_info(model: Any) -> dict[str, Any]:
    """What a run records of its model: card name and version, runtime, precision and why that runtime."""
    card = model.card
    return {
        "name": card.name,
        "version": card.version,
        "runtime": getattr(model, "runtime", "torch"),
        "precision": getattr(model, "precision", "fp32"),
        **({"runtime_reason": model.runtime_reason} if getattr(model, "runtime_reason", None) else {}),
    }


class CardModel:
    """The engine's model protocol properties that come from the card (``bands``, ``num_classes``)."""

    card: ModelCard

    @property
    def bands(self) -> tuple[str, ...]:
        return self.card.bands

    @property
    def num_classes(self) -> int:
        return len(self.card.classes)
