"""STAC Items for what s2mask writes: one Item per mask or composite, and an ItemCollection of a batch.

Each Item describes one written raster from the raster itself and from the run that made it:

* geometry and bbox: the raster's footprint in EPSG:4326 (edges densified before reprojection);
* ``proj:`` (projection v2.0.0): ``proj:code``, ``proj:shape``, ``proj:transform``, ``proj:bbox`` of its grid;
* ``raster:bands`` (raster v1.1.0): data type, nodata, scale/offset and resolution of every band;
* a mask's classes (classification v2.0.0): values, names and colours from :mod:`s2mask.mask`, which
  owns the encoding, with each class's pixel count from the run's summary;
* ``eo:cloud_cover`` (eo v1.1.0) and ``s2mask:shadow_cover``: percent of the valid pixels, from the
  summary's fractions (the mask is not counted again);
* ``processing:software`` ``{"s2mask": version}`` and ``processing:datetime`` (processing v1.2.0), the
  model's name and version from its card (``s2mask:model``, ``s2mask:model_version``);
* ``datetime`` of the source product (a composite: ``start_datetime``/``end_datetime`` of its scenes);
* a ``derived_from`` link to each source: the STAC item it was read from, or the product's path.

Builders return :class:`pystac.Item`; :func:`write_item` and :func:`write_item_collection` write plain
paths (the caller stages them in its :class:`~s2mask._atomic.OutputTransaction`).  Asset hrefs are
relative to the Item's folder, so an Item keeps working when the folder moves.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from s2mask.errors import InvalidParameterError, OutputError

if TYPE_CHECKING:
    import pystac

__all__ = [
    "EXTENSIONS",
    "INDEX_NAME",
    "ITEM_SUFFIX",
    "RasterInfo",
    "acquisition_datetime",
    "composite_item",
    "item_collection",
    "item_path",
    "mask_item",
    "read_item",
    "stage_composite_item",
    "write_item",
    "write_item_collection",
]

EXTENSIONS: Mapping[str, str] = {
    "projection": "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "eo": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "classification": "https://stac-extensions.github.io/classification/v2.0.0/schema.json",
    "processing": "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
}
"""The STAC extensions (and versions) the Items declare; their schemas are vendored in ``tests/data/stac_schemas``."""

INDEX_NAME = "index.geojson"
"""File name of a batch's STAC ItemCollection (``s2mask stac``, ``s2mask run`` into a folder)."""

ITEM_SUFFIX = ".stac.json"
"""An output's Item is ``<output stem>.stac.json`` beside it."""

COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"

_PRODUCT_TIME = re.compile(r"_(\d{8}T\d{6})(?:_|$)")


def item_path(output: str | Path) -> Path:
    """Where the Item of ``output`` goes: ``mask.tif`` -> ``mask.stac.json``."""
    output = Path(output)
    return output.with_name(output.stem + ITEM_SUFFIX)


@dataclass(frozen=True)
class RasterInfo:
    """The grid and bands of a written raster (read from its header, no pixels)."""

    crs: Any
    """``rasterio.crs.CRS`` of the grid."""
    transform: Any
    """``affine.Affine`` of the grid."""
    shape: tuple[int, int]
    """``(rows, cols)``."""
    bounds: tuple[float, float, float, float]
    """``(minx, miny, maxx, maxy)`` in ``crs``."""
    bands: tuple[dict[str, Any], ...]
    """One ``raster:bands`` object per band."""
    descriptions: tuple[str, ...]
    """Each band's description ('' when it has none)."""

    @classmethod
    def read(cls, path: str | Path) -> RasterInfo:
        """Read ``path``'s grid and band metadata.

        Raises:
            InvalidParameterError: the raster has no CRS (a STAC Item needs a footprint).
        """
        import rasterio

        with rasterio.open(path) as src:
            if src.crs is None:
                raise InvalidParameterError(
                    f"{path} has no CRS, so its STAC Item would have no footprint; expected a georeferenced "
                    "raster. Give the input a CRS, or pass --no-stac-item to skip the Item."
                )
            res = abs(float(src.res[0]))
            bands = tuple(
                _band(dtype, nodata, scale, offset, res)
                for dtype, nodata, scale, offset in zip(
                    src.dtypes, src.nodatavals, src.scales, src.offsets, strict=True
                )
            )
            return cls(src.crs, src.transform, (src.height, src.width), tuple(src.bounds), bands,
                       tuple(d or "" for d in src.descriptions))  # fmt: skip


def _band(dtype: str, nodata: float | None, scale: float, offset: float, res: float) -> dict[str, Any]:
    band: dict[str, Any] = {"data_type": str(dtype), "spatial_resolution": res, "sampling": "area"}
    if nodata is not None:
        band["nodata"] = int(nodata) if float(nodata).is_integer() else float(nodata)
    if scale not in (None, 1.0) or offset not in (None, 0.0):
        band["scale"], band["offset"] = float(scale), float(offset)
    return band


# ---------------------------------------------------------------- builders


def mask_item(
    raster: RasterInfo,
    summary: Mapping[str, Any],
    *,
    item_id: str,
    href: str,
    when: datetime | str | None = None,
    source: str | None = None,
    model: Mapping[str, Any] | None = None,
    siblings: Mapping[str, str] | None = None,
) -> pystac.Item:
    """The Item of a mask COG.

    Args:
        raster: the written mask's grid (:meth:`RasterInfo.read`).
        summary: the run's summary (:func:`s2mask.summary.mask_summary`): ``fractions`` and ``counts``.
        item_id: the Item id (the source product's or item's id).
        href: the mask's href, relative to the Item (its file name).
        when: acquisition time of the source (:func:`acquisition_datetime`); ``None``: the processing time.
        source: the source STAC item's href or the product's path (``derived_from`` link).
        model: ``{"name": ..., "version": ..., "runtime": ..., "precision": ...}``
            (:func:`s2mask.model.card.model_info`).
        siblings: hrefs of the other outputs by key: ``summary``, ``quicklook``, ``probabilities``.
    """
    from s2mask.mask import CLASSES, COLOURS, NODATA, NODATA_NAME

    fractions = summary.get("fractions") or {}
    counts = summary.get("counts") or {}
    classes = [
        _class(value, name, COLOURS.get(value), counts.get(name)) for value, name in sorted(CLASSES.items())
    ]
    classes.append(
        {**_class(NODATA, NODATA_NAME, COLOURS.get(NODATA), counts.get(NODATA_NAME)), "nodata": True}
    )
    item = _raster_item(raster, item_id=item_id, when=when, sources=[source] if source else [])
    props = item.properties
    props.update(_percent("eo:cloud_cover", fractions.get("cloud")))
    props.update(_percent("s2mask:shadow_cover", fractions.get("shadow")))
    props.update({f"s2mask:{name}_fraction": value for name, value in fractions.items()})
    if model:
        props["s2mask:model"], props["s2mask:model_version"] = (
            str(model.get("name")),
            str(model.get("version")),
        )
        for key in ("runtime", "precision"):  # where and how the model ran (s2mask.model.card.model_info)
            if model.get(key):
                props[f"s2mask:model_{key}"] = str(model[key])
    by = f"the s2mask model {props['s2mask:model']}" if model else "an s2mask model"
    props["processing:lineage"] = f"Cloud and shadow classes predicted by {by} from the source's reflectance"
    item.add_asset("mask", _asset(href, COG_MEDIA_TYPE, "data", f"Cloud and shadow mask ({_legend()})",
                                  {"raster:bands": list(raster.bands), "classification:classes": classes}))  # fmt: skip
    _add_siblings(item, siblings or {})
    item.stac_extensions = [
        EXTENSIONS[k] for k in ("projection", "raster", "eo", "classification", "processing")
    ]
    return item


def composite_item(
    raster: RasterInfo,
    *,
    item_id: str,
    href: str,
    dates: Sequence[datetime | str | None] = (),
    sources: Sequence[str] = (),
    method: str = "",
    quicklook: str | None = None,
) -> pystac.Item:
    """The Item of a composite COG: its bands as written, the span of its scenes' dates, one link per scene.

    Args:
        raster: the written composite's grid and bands (:meth:`RasterInfo.read`); bands named by their
            descriptions.
        item_id: the Item id (the composite's file stem).
        href: the composite's href, relative to the Item.
        dates: acquisition time of each scene (``start_datetime``/``end_datetime``).
        sources: each scene's STAC item href or product path (``derived_from`` links).
        method: the composite method (``s2mask:method``).
        quicklook: the quick-look's href, if one was written.
    """
    from s2mask.bands import BANDS

    known = [d for d in (_as_datetime(x) for x in dates) if d is not None]
    item = _raster_item(raster, item_id=item_id, when=None, sources=sources,
                        span=(min(known), max(known)) if known else None)  # fmt: skip
    props = item.properties
    props["s2mask:method"], props["s2mask:scenes"] = str(method), len(sources)
    props["processing:lineage"] = f"{method} composite of the clear observations of {len(sources)} scenes"
    bands = [
        {**b, "name": d} if d else dict(b) for b, d in zip(raster.bands, raster.descriptions, strict=True)
    ]
    fields: dict[str, Any] = {"raster:bands": bands}
    eo = [
        {"name": d, "common_name": BANDS[d].common_name, "center_wavelength": BANDS[d].wavelength_nm / 1000}
        for d in raster.descriptions
        if d in BANDS
    ]
    if eo:
        fields["eo:bands"] = eo
    item.add_asset("composite", _asset(href, COG_MEDIA_TYPE, "data", f"{method} composite", fields))
    _add_siblings(item, {"quicklook": quicklook} if quicklook else {})
    item.stac_extensions = [EXTENSIONS[k] for k in ("projection", "raster", "eo", "processing")]
    return item


def stage_composite_item(outputs: Any, cubes: Sequence[Any], *, method: str) -> None:
    """Write the composite's Item into its staged path in ``outputs`` (an ``OutputTransaction``).

    ``outputs`` holds ``composite`` (written), ``stac_item`` and maybe ``quicklook``; ``cubes`` are the
    scenes in input order (their ``source`` and acquisition time become links and the date span).
    """
    targets, staged = outputs.targets, outputs.staged
    quicklook = targets["quicklook"].name if "quicklook" in staged and staged["quicklook"].exists() else None
    item = composite_item(
        RasterInfo.read(staged["composite"]),
        item_id=targets["composite"].stem,
        href=targets["composite"].name,
        dates=[acquisition_datetime(c.attrs) for c in cubes],
        sources=[str(c.attrs.get("source") or c.attrs.get("product_id") or "") for c in cubes],
        method=method,
        quicklook=quicklook,
    )
    write_item(item, staged["stac_item"])


def _raster_item(
    raster: RasterInfo,
    *,
    item_id: str,
    when: datetime | str | None,
    sources: Iterable[str],
    span: tuple[datetime, datetime] | None = None,
) -> pystac.Item:
    """Core fields, ``proj:`` and processing fields shared by every Item; ``derived_from`` per source."""
    import pystac

    from s2mask import __version__

    geometry, bbox = _footprint(raster)
    now = _now()
    acquired = _as_datetime(when)
    props: dict[str, Any] = {}
    if span is not None:  # a composite: the span of its scenes, no single datetime
        props["start_datetime"], props["end_datetime"] = _iso(span[0]), _iso(span[1])
        acquired = None
    elif acquired is None:  # the source does not say when it was acquired: the processing time, flagged
        props["s2mask:datetime_is_processing_time"] = True
        acquired = now
    epsg = raster.crs.to_epsg()
    props.update({
        "proj:code": f"EPSG:{epsg}" if epsg else None,
        "proj:shape": list(raster.shape),
        "proj:transform": [float(v) for v in list(raster.transform)[:6]],
        "proj:bbox": [float(v) for v in raster.bounds],
        "processing:software": {"s2mask": __version__},
        "processing:datetime": _iso(now),
        "created": _iso(now),
    })  # fmt: skip
    if not epsg:
        props["proj:wkt2"] = raster.crs.to_wkt()
    item = pystac.Item(item_id, geometry, bbox, acquired, props)
    for href in filter(None, sources):
        href = _source_href(str(href))
        item.add_link(pystac.Link("derived_from", href, media_type=_link_type(href)))
    return item


def _footprint(raster: RasterInfo, points: int = 11) -> tuple[dict[str, Any], list[float]]:
    """The raster's outline in EPSG:4326, each edge densified to ``points`` vertices, and its bbox."""
    import numpy as np
    from rasterio.warp import transform

    minx, miny, maxx, maxy = raster.bounds
    t = np.linspace(0.0, 1.0, points)[:-1]
    xs = np.concatenate(
        [minx + (maxx - minx) * t, np.full_like(t, maxx), maxx - (maxx - minx) * t, np.full_like(t, minx)]
    )
    ys = np.concatenate(
        [np.full_like(t, miny), miny + (maxy - miny) * t, np.full_like(t, maxy), maxy - (maxy - miny) * t]
    )
    lon, lat = transform(raster.crs, "EPSG:4326", xs.tolist(), ys.tolist())
    ring = [[round(float(x), 8), round(float(y), 8)] for x, y in zip(lon, lat, strict=True)]  # ~1 mm
    ring.append(ring[0])
    xs_, ys_ = [p[0] for p in ring], [p[1] for p in ring]
    return {"type": "Polygon", "coordinates": [ring]}, [min(xs_), min(ys_), max(xs_), max(ys_)]


def _class(value: int, name: str, colour: Sequence[int] | None, count: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"value": int(value), "name": name}
    if colour is not None:
        out["color_hint"] = "".join(f"{c:02X}" for c in colour[:3])
    if count is not None:
        out["count"] = int(count)
    return out


def _legend() -> str:
    from s2mask.mask import category_names

    return ", ".join(f"{v} {name}" for v, name in category_names().items())


def _percent(key: str, fraction: float | None) -> dict[str, float]:
    return {} if fraction is None else {key: 100.0 * float(fraction)}


def _asset(href: str, media_type: str, role: str, title: str, fields: Mapping[str, Any] | None = None) -> Any:
    import pystac

    return pystac.Asset(
        href, title=title, media_type=media_type, roles=[role], extra_fields=dict(fields or {})
    )


_SIBLINGS = {
    "summary": ("application/json", "metadata", "Class fractions, counts, model and timing"),
    "quicklook": ("image/png", "overview", "Quick-look"),
    "probabilities": (COG_MEDIA_TYPE, "data", "Class probabilities (percent)"),
}


def _add_siblings(item: pystac.Item, siblings: Mapping[str, str]) -> None:
    for key, href in siblings.items():
        media_type, role, title = _SIBLINGS[key]
        item.add_asset(key, _asset(href, media_type, role, title))


def _source_href(source: str) -> str:
    """A URL or GDAL path as it is; a local path made absolute (the Item may be read from elsewhere)."""
    if "://" in source or source.startswith("/vsi"):
        return source
    return str(Path(source).expanduser().absolute())


def _link_type(href: str) -> str | None:
    if href.endswith(".json") or "/items/" in href:
        return "application/geo+json"
    return None


# ---------------------------------------------------------------- dates


def acquisition_datetime(attrs: Mapping[str, Any]) -> datetime | None:
    """When the source was acquired: its ``datetime`` attribute (STAC), else the time in its product id.

    ``S2B_MSIL2A_20240610T101609_N0510_...`` gives 2024-06-10T10:16:09Z; ``None`` when neither says.
    """
    found = _as_datetime(attrs.get("datetime"))
    if found is not None:
        return found
    match = _PRODUCT_TIME.search(str(attrs.get("product_id") or ""))
    if match is None:
        return None
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)


def _as_datetime(value: datetime | str | None) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    from pystac.utils import str_to_datetime

    try:
        return _as_datetime(str_to_datetime(str(value)))
    except ValueError:
        return None


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- writing


def write_item(item: pystac.Item, path: str | Path) -> Path:
    """Write ``item`` as JSON to ``path`` (a plain path: stage it in the run's transaction)."""
    return _write_json(path, item.to_dict(include_self_link=False, transform_hrefs=False))


def item_collection(items: Iterable[pystac.Item | Mapping[str, Any]], **members: Any) -> dict[str, Any]:
    """A STAC ItemCollection (a GeoJSON FeatureCollection) of ``items``; ``members`` are added at the top level."""
    features = [
        dict(i) if isinstance(i, Mapping) else i.to_dict(include_self_link=False, transform_hrefs=False)
        for i in items
    ]
    return {"type": "FeatureCollection", "features": features, **members}


def write_item_collection(
    path: str | Path, items: Iterable[pystac.Item | Mapping[str, Any]], **members: Any
) -> Path:
    """Write :func:`item_collection` of ``items`` to ``path`` atomically (replacing an older one)."""
    from s2mask._atomic import atomic_write_text

    text = json.dumps(item_collection(items, **members), indent=2, default=str) + "\n"
    try:
        return atomic_write_text(path, text, overwrite=True)
    except OutputError as exc:
        raise OutputError(f"Cannot write the STAC ItemCollection {path}: {exc}") from exc


def read_item(path: str | Path) -> dict[str, Any] | None:
    """An Item JSON written earlier, or ``None`` when it is absent or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: str | Path, doc: Mapping[str, Any]) -> Path:
    path = Path(path)
    try:
        path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    except ValueError as exc:
        raise InvalidParameterError(
            f"The STAC Item for {path} holds a value JSON cannot represent ({exc}); expected finite numbers."
        ) from exc
    except OSError as exc:
        raise OutputError(
            f"Cannot write the STAC Item {path} ({exc.strerror or exc}); check the output folder."
        ) from exc
    return path
