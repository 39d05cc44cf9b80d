"""The one Sentinel-2 band table.

Band names follow ESA (``B01`` .. ``B12`` with ``B8A``).  Everything in s2mask that
needs to know about a band (native resolution, aliases, presets) asks this module.
"""

from __future__ import annotations

from dataclasses import dataclass

from s2mask.errors import InvalidParameterError

__all__ = [
    "Band",
    "BANDS",
    "BAND_NAMES",
    "PRESETS",
    "DEFAULT_BANDS",
    "canonical_band",
    "resolve_bands",
]


@dataclass(frozen=True)
class Band:
    """One Sentinel-2 MSI band."""

    name: str
    """ESA band name, e.g. ``"B02"``."""
    resolution: int
    """Native ground sampling distance in metres (10, 20 or 60)."""
    wavelength_nm: int
    """Central wavelength in nanometres (S2A)."""
    common_name: str
    """STAC ``eo:common_name`` (``blue``, ``nir``, ``swir16`` ...)."""


BANDS: dict[str, Band] = {
    b.name: b
    for b in (
        Band("B01", 60, 443, "coastal"),
        Band("B02", 10, 490, "blue"),
        Band("B03", 10, 560, "green"),
        Band("B04", 10, 665, "red"),
        Band("B05", 20, 705, "rededge"),
        Band("B06", 20, 740, "rededge"),
        Band("B07", 20, 783, "rededge"),
        Band("B08", 10, 842, "nir"),
        Band("B8A", 20, 865, "nir08"),
        Band("B09", 60, 945, "nir09"),
        Band("B10", 60, 1375, "cirrus"),
        Band("B11", 20, 1610, "swir16"),
        Band("B12", 20, 2190, "swir22"),
    )
}

BAND_NAMES: tuple[str, ...] = tuple(BANDS)
"""All 13 bands in ESA order."""

PRESETS: dict[str, tuple[str, ...]] = {
    "rgb": ("B04", "B03", "B02"),
    "rgbn": ("B02", "B03", "B04", "B08"),
    "s2-6": ("B02", "B03", "B04", "B08", "B11", "B12"),
    "s2-9": ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12"),
    "s2-13": BAND_NAMES,
}
"""Named band sets. ``s2-9`` is the default model's input."""

DEFAULT_BANDS = PRESETS["s2-9"]

_ALIASES = {
    "B1": "B01", "B2": "B02", "B3": "B03", "B4": "B04", "B5": "B05", "B6": "B06",
    "B7": "B07", "B8": "B08", "B9": "B09", "B08A": "B8A",
}


def canonical_band(name: str) -> str:
    """Return the ESA name for ``name`` (``"b2"``, ``"B2"``, ``"B02"`` -> ``"B02"``)."""
    key = str(name).strip().upper()
    key = _ALIASES.get(key, key)
    if key not in BANDS:
        raise InvalidParameterError(
            f"Unknown Sentinel-2 band {name!r}; expected one of {', '.join(BAND_NAMES)}."
        )
    return key


def resolve_bands(spec: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Turn a preset name (``"s2-9"``), a comma list (``"B2,B3"``) or a sequence into ESA names."""
    if isinstance(spec, str):
        if spec in PRESETS:
            return PRESETS[spec]
        spec = [s for s in spec.split(",") if s.strip()]
    names = tuple(canonical_band(s) for s in spec)
    if not names:
        raise InvalidParameterError("The band list is empty; give a preset (rgb, rgbn, s2-9) or band names.")
    if len(set(names)) != len(names):
        raise InvalidParameterError(f"The band list {', '.join(names)} repeats a band; list each band once.")
    return names
