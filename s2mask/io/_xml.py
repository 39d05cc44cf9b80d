"""Parsing of the SAFE metadata files ``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml`` and ``MTD_TL.xml``.

Element names are matched by their local name (namespaces differ between PSD versions),
so products from every processing baseline since 02.00 are read the same way.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field

from s2mask.bands import BAND_NAMES
from s2mask.errors import CorruptDataError, ProductFormatError

__all__ = ["ProductMetadata", "TileGeocoding", "parse_product_metadata", "parse_tile_metadata"]

_LEVELS = {"S2MSI1C": "L1C", "S2MSI2A": "L2A", "S2MSI2AP": "L2A"}


@dataclass(frozen=True)
class ProductMetadata:
    """What the product-level metadata says about how to turn DN into reflectance."""

    product_type: str
    """``PRODUCT_TYPE``, e.g. ``"S2MSI2A"``."""
    level: str
    """``"L1C"`` or ``"L2A"``."""
    processing_baseline: str | None
    """``PROCESSING_BASELINE``, e.g. ``"05.09"`` (None when the file has none)."""
    product_uri: str | None
    """``PRODUCT_URI`` (the ``.SAFE`` folder name), when present."""
    quantification: float
    """``QUANTIFICATION_VALUE`` (L1C) or ``BOA_QUANTIFICATION_VALUE`` (L2A)."""
    offsets: dict[str, float] = field(default_factory=dict)
    """ESA band name -> ``RADIO_ADD_OFFSET`` / ``BOA_ADD_OFFSET`` (0 for bands the file does not list)."""
    nodata: int = 0
    """DN of the ``NODATA`` special value."""
    saturated: int = 65535
    """DN of the ``SATURATED`` special value."""

    def offset(self, band: str) -> float:
        """The additive DN offset of ``band`` (0 when the metadata gives none)."""
        return self.offsets.get(band, 0.0)


@dataclass(frozen=True)
class TileGeocoding:
    """The tile grid from ``MTD_TL.xml``."""

    crs: str
    """``HORIZONTAL_CS_CODE``, e.g. ``"EPSG:32631"``."""
    sizes: dict[int, tuple[int, int]]
    """Resolution (m) -> (rows, cols)."""
    origins: dict[int, tuple[float, float]]
    """Resolution (m) -> (ULX, ULY) of the upper-left pixel corner."""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse(data: bytes, name: str) -> ET.Element:
    if not data.strip():
        raise CorruptDataError(
            f"The metadata file {name} is empty; expected Sentinel-2 XML. Download the product again."
        )
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise CorruptDataError(
            f"The metadata file {name} is not valid XML ({exc}); the product is truncated or corrupt. "
            "Download the product again."
        ) from exc


def _iter(root: ET.Element, local: str) -> Iterator[ET.Element]:
    return (el for el in root.iter() if _local(el.tag) == local)


def _first_text(root: ET.Element, *locals_: str) -> str | None:
    for local in locals_:
        for el in _iter(root, local):
            if el.text and el.text.strip():
                return el.text.strip()
    return None


def _number(text: str, what: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise CorruptDataError(
            f"{name}: {what} is {text!r}; expected a number. The metadata is corrupt."
        ) from None


def parse_product_metadata(data: bytes, name: str = "MTD_MSIL*.xml") -> ProductMetadata:
    """Parse the bytes of ``MTD_MSIL1C.xml`` or ``MTD_MSIL2A.xml``."""
    root = _parse(data, name)
    product_type = (_first_text(root, "PRODUCT_TYPE") or "").upper()
    if product_type not in _LEVELS:
        found = product_type or "no PRODUCT_TYPE"
        raise ProductFormatError(
            f"{name} describes product type {found}; s2mask reads S2MSI1C (L1C) and S2MSI2A (L2A) products. "
            "Pass a Level-1C or Level-2A product."
        )
    level = _LEVELS[product_type]
    if level == "L1C":
        q_text = _first_text(root, "QUANTIFICATION_VALUE")
        offset_tag = "RADIO_ADD_OFFSET"
    else:
        q_text = _first_text(root, "BOA_QUANTIFICATION_VALUE", "L2A_BOA_QUANTIFICATION_VALUE")
        offset_tag = "BOA_ADD_OFFSET"
    if q_text is None:
        raise CorruptDataError(
            f"{name} has no {'QUANTIFICATION_VALUE' if level == 'L1C' else 'BOA_QUANTIFICATION_VALUE'}; "
            "expected it in Product_Image_Characteristics. The metadata is incomplete; download the product again."
        )
    quant = _number(q_text, "the quantification value", name)
    if quant <= 0:
        raise CorruptDataError(f"{name}: the quantification value is {quant}; expected a positive number.")
    offsets = {}
    for el in _iter(root, offset_tag):
        band_id = el.get("band_id", el.get("bandId"))
        if band_id is None or not band_id.strip().isdigit() or int(band_id) >= len(BAND_NAMES):
            raise CorruptDataError(f"{name}: {offset_tag} has band_id {band_id!r}; expected 0..12.")
        offsets[BAND_NAMES[int(band_id)]] = _number(el.text or "", offset_tag, name)
    special = {}
    for el in _iter(root, "Special_Values"):
        text = _first_text(el, "SPECIAL_VALUE_TEXT")
        index = _first_text(el, "SPECIAL_VALUE_INDEX")
        if text and index:
            special[text.upper()] = int(_number(index, "SPECIAL_VALUE_INDEX", name))
    return ProductMetadata(
        product_type=product_type,
        level=level,
        processing_baseline=_first_text(root, "PROCESSING_BASELINE"),
        product_uri=_first_text(root, "PRODUCT_URI"),
        quantification=quant,
        offsets=offsets,
        nodata=special.get("NODATA", 0),
        saturated=special.get("SATURATED", 65535),
    )


def parse_tile_metadata(data: bytes, name: str = "MTD_TL.xml") -> TileGeocoding:
    """Parse the bytes of a granule's ``MTD_TL.xml``: CRS, grid sizes and origins per resolution."""
    root = _parse(data, name)
    crs = _first_text(root, "HORIZONTAL_CS_CODE")
    if not crs:
        raise CorruptDataError(
            f"{name} has no HORIZONTAL_CS_CODE; expected the tile's EPSG code. The metadata is corrupt."
        )
    sizes: dict[int, tuple[int, int]] = {}
    for el in _iter(root, "Size"):
        res = int(_number(el.get("resolution", ""), "Size resolution", name))
        rows, cols = _first_text(el, "NROWS"), _first_text(el, "NCOLS")
        if rows and cols:
            sizes[res] = (int(_number(rows, "NROWS", name)), int(_number(cols, "NCOLS", name)))
    origins: dict[int, tuple[float, float]] = {}
    for el in _iter(root, "Geoposition"):
        res = int(_number(el.get("resolution", ""), "Geoposition resolution", name))
        ulx, uly = _first_text(el, "ULX"), _first_text(el, "ULY")
        if ulx and uly:
            origins[res] = (_number(ulx, "ULX", name), _number(uly, "ULY", name))
    if not origins:
        raise CorruptDataError(
            f"{name} has no Geoposition (ULX/ULY); expected the tile geocoding. The metadata is corrupt."
        )
    return TileGeocoding(crs=crs.upper(), sizes=sizes, origins=origins)
