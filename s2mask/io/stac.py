"""STAC: searching an API, reading Sentinel-2 items, and loading them lazily.

Three steps, each usable alone:

* :func:`search_items` asks a STAC API (pystac-client) for items in a bbox and date
  range, filtering cloud cover on the server when it conforms to the ``query`` or
  ``filter`` extension and always on the client as well.
* :func:`parse_item` reads what s2mask needs from one item: the asset key of each ESA
  band (``"blue"``, ``"B02"`` ... -> ``"B02"``), the CRS (``proj:code`` or ``proj:epsg``),
  the processing level and baseline, and each band's radiometry (scale, offset, nodata)
  from the item's own metadata, never from its date.
* :func:`open_stac_item` loads one item with odc-stac into the reader contract: a lazy
  dask-backed ``xr.DataArray`` with dims ``("band", "y", "x")``, ESA band names, float32
  reflectance in [0, 1] with NaN for nodata, and a CRS.

Provider presets (:data:`PRESETS`) hold what differs between Earth Search and the
Planetary Computer.  Radiometry rules, in order (first match wins):

1. ``earthsearch:boa_offset_applied`` (or ``sentinel:boa_offset_applied``) true: the
   provider already shifted the pixels, offset 0 (Earth Search's ``raster:bands`` offset
   of such items is ignored, see Element84/earth-search#71);
2. ``raster:bands`` ``scale``/``offset`` of the asset;
3. the processing baseline: 04.00 and later carry ``BOA_ADD_OFFSET`` /
   ``RADIO_ADD_OFFSET`` of -1000, i.e. offset -0.1 at scale 1e-4; earlier baselines 0.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from s2mask.bands import BANDS, canonical_band
from s2mask.errors import EmptySearchError, InvalidParameterError, ProductFormatError, StacError
from s2mask.io._remote import RemoteReads, public_url, reader_driver
from s2mask.params import BBox, DateRange, parse_bbox, parse_date_range

if TYPE_CHECKING:
    import pystac
    import xarray as xr

__all__ = [
    "DEFAULT_SCHEMES",
    "EARTH_SEARCH_URL",
    "PLANETARY_COMPUTER_URL",
    "PRESETS",
    "BandRadiometry",
    "ItemInfo",
    "StacPreset",
    "asset_key_for_band",
    "band_radiometry",
    "check_href_schemes",
    "find_preset",
    "item_crs",
    "item_level",
    "open_stac_item",
    "parse_item",
    "preset_for_item",
    "processing_baseline",
    "search_items",
    "sign_item",
]

log = logging.getLogger(__name__)

EARTH_SEARCH_URL = "https://earth-search.aws.element84.com/v1"
PLANETARY_COMPUTER_URL = "https://planetarycomputer.microsoft.com/api/stac/v1"
DEFAULT_SCHEMES: tuple[str, ...] = ("http", "https", "s3", "file")
"""Href schemes opened unless the user allows others."""

# Earth Search v1 asset keys (STAC common names, rededge split in three) by ESA band.
_EARTH_SEARCH_KEYS: dict[str, str] = {
    "B01": "coastal",
    "B02": "blue",
    "B03": "green",
    "B04": "red",
    "B05": "rededge1",
    "B06": "rededge2",
    "B07": "rededge3",
    "B08": "nir",
    "B8A": "nir08",
    "B09": "nir09",
    "B10": "cirrus",
    "B11": "swir16",
    "B12": "swir22",
}
_ESA_KEYS: dict[str, str] = {b: b for b in BANDS}
_DEFAULT_SCALE = 1e-4
_BASELINE_OFFSET = -0.1  # -1000 DN at quantification 10000, from baseline 04.00 on


@dataclass(frozen=True)
class StacPreset:
    """What one provider's collection looks like."""

    name: str
    """Preset name, ``"<provider>/<collection>"``."""
    url: str
    """STAC API root."""
    collection: str
    """Collection id at that API."""
    level: str
    """Processing level of its items, ``"L1C"`` or ``"L2A"``."""
    asset_keys: Mapping[str, str]
    """Asset key of each ESA band."""
    sign: bool = False
    """Hrefs need signing with the ``planetary-computer`` package before they can be read."""
    notes: str = ""
    """How the provider's radiometry is encoded."""


PRESETS: dict[str, StacPreset] = {
    p.name: p
    for p in (
        StacPreset(
            "earth-search/sentinel-2-l2a",
            EARTH_SEARCH_URL,
            "sentinel-2-l2a",
            "L2A",
            _EARTH_SEARCH_KEYS,
            notes="COGs; items since baseline 04.00 may be harmonised (earthsearch:boa_offset_applied).",
        ),
        StacPreset(
            "earth-search/sentinel-2-c1-l2a",
            EARTH_SEARCH_URL,
            "sentinel-2-c1-l2a",
            "L2A",
            _EARTH_SEARCH_KEYS,
            notes="Collection 1 COGs; raster:bands carries scale 1e-4 and offset -0.1.",
        ),
        StacPreset(
            "earth-search/sentinel-2-l1c",
            EARTH_SEARCH_URL,
            "sentinel-2-l1c",
            "L1C",
            _EARTH_SEARCH_KEYS,
            notes="JPEG2000 on s3 (requester pays); raster:bands carries scale and offset.",
        ),
        StacPreset(
            "planetary-computer/sentinel-2-l2a",
            PLANETARY_COMPUTER_URL,
            "sentinel-2-l2a",
            "L2A",
            _ESA_KEYS,
            sign=True,
            notes="COGs on Azure blob storage, signed; offset from s2:processing_baseline.",
        ),
    )
}


def preset_for_item(item: pystac.Item) -> StacPreset | None:
    """The preset of the provider an item comes from (its links, then its asset hosts)."""
    # get_target_str never follows a link (link.href may resolve the root over the network)
    hrefs = [
        link.get_target_str() or ""
        for link in item.links
        if link.rel in ("root", "self", "collection", "parent")
    ]
    for href in hrefs:
        for preset in PRESETS.values():
            if href.lower().startswith(preset.url.lower()) and preset.collection == item.collection_id:
                return preset
    if any("blob.core.windows.net" in a.href for a in item.assets.values()):
        return PRESETS["planetary-computer/sentinel-2-l2a"]
    return find_preset(collection=item.collection_id) if item.collection_id else None


def find_preset(*, url: str | None = None, collection: str | None = None) -> StacPreset | None:
    """The preset for an API root and collection id, or ``None`` for an unknown provider."""
    if url is None and collection is None:
        return None
    norm = (url or "").rstrip("/").lower()
    for preset in PRESETS.values():
        if collection is not None and preset.collection != collection:
            continue
        if url is None or norm == preset.url.lower() or norm.startswith(preset.url.lower().rsplit("/", 1)[0]):
            return preset
    return None


@dataclass(frozen=True)
class BandRadiometry:
    """How one band's DN become reflectance: ``DN * scale + offset``, ``nodata`` DN masked."""

    scale: float
    offset: float
    nodata: float | None
    source: str
    """Which metadata decided (``"raster:bands"``, ``"earthsearch:boa_offset_applied"``, ``"baseline 04.00"`` ...)."""


@dataclass(frozen=True)
class ItemInfo:
    """What s2mask reads from one STAC item."""

    id: str
    collection: str | None
    datetime: datetime | None
    crs: str
    """``"EPSG:<code>"`` (or another ``proj:code``)."""
    level: str
    """``"L1C"`` or ``"L2A"``."""
    processing_baseline: str | None
    """``"NN.NN"``, or ``None`` when the item does not say."""
    cloud_cover: float | None
    """``eo:cloud_cover`` in percent."""
    assets: Mapping[str, str] = field(default_factory=dict)
    """Asset key by ESA band name (requested bands only)."""
    radiometry: Mapping[str, BandRadiometry] = field(default_factory=dict)
    """Radiometry by ESA band name (requested bands only)."""
    source: str = ""
    """The item's self href, or its id when it has none."""


# ---------------------------------------------------------------- item parsing


def _props(item: pystac.Item) -> dict[str, Any]:
    return item.properties or {}


def item_crs(item: pystac.Item) -> str:
    """The item's CRS as ``"EPSG:<code>"`` from ``proj:code`` or ``proj:epsg`` (item, then assets)."""
    sources = [_props(item)] + [a.extra_fields for a in item.assets.values()]
    for src in sources:
        code = src.get("proj:code")
        if code:
            return str(code)
        epsg = src.get("proj:epsg")
        if epsg:
            return f"EPSG:{int(epsg)}"
    raise ProductFormatError(
        f"STAC item {item.id} has no proj:code or proj:epsg (on the item or its assets); "
        "expected the projection extension, as Sentinel-2 items from Earth Search and the "
        "Planetary Computer carry it."
    )


_BASELINE_IN_NAME = re.compile(r"_N(\d{2})(\d{2})_")


def processing_baseline(item: pystac.Item) -> str | None:
    """``"NN.NN"`` from ``s2:processing_baseline``, ``sentinel:processing_baseline`` or a product name."""
    props = _props(item)
    for key in ("s2:processing_baseline", "sentinel:processing_baseline", "processing:version"):
        value = props.get(key)
        if value not in (None, ""):
            text = str(value).strip()
            if re.fullmatch(r"\d{1,2}\.\d{1,2}", text):
                major, minor = text.split(".")
                return f"{int(major):02d}.{int(minor):02d}"
    for key in ("s2:product_uri", "sentinel:product_id", "s2:granule_id", "s2:datatake_id"):
        m = _BASELINE_IN_NAME.search(str(props.get(key, "")) + "_")
        if m:
            return f"{m[1]}.{m[2]}"
    m = _BASELINE_IN_NAME.search(item.id + "_")
    return f"{m[1]}.{m[2]}" if m else None


def item_level(item: pystac.Item) -> str:
    """``"L1C"`` or ``"L2A"`` from ``s2:product_type``, the collection id or the item id."""
    props = _props(item)
    product_type = str(props.get("s2:product_type", "")).upper()
    if product_type in ("S2MSI1C", "S2MSI2A"):
        return "L1C" if product_type.endswith("1C") else "L2A"
    for text in (str(item.collection_id or ""), item.id, str(props.get("s2:product_uri", ""))):
        up = text.upper()
        if "L1C" in up or "MSIL1C" in up:
            return "L1C"
        if "L2A" in up or "MSIL2A" in up:
            return "L2A"
    raise ProductFormatError(
        f"Cannot tell whether STAC item {item.id} (collection {item.collection_id}) is L1C or L2A; "
        "expected s2:product_type or L1C/L2A in its collection or id."
    )


def asset_key_for_band(item: pystac.Item, band: str, preset: StacPreset | None = None) -> str:
    """The key of the asset that holds ESA ``band`` (``"B02"``) in ``item``.

    Tries the preset's key, the ESA name, the Earth Search name, then the asset whose
    ``eo:bands`` (or ``bands``) name is the band.
    """
    band = canonical_band(band)
    candidates = [preset.asset_keys.get(band)] if preset else []
    candidates += [band, _EARTH_SEARCH_KEYS[band], band.lower()]
    for key in candidates:
        if key and key in item.assets:
            return key
    for key, asset in item.assets.items():  # a single-band asset whose eo:bands names the band
        described = asset.extra_fields.get("eo:bands") or asset.extra_fields.get("bands") or []
        name = described[0].get("name") if len(described) == 1 and isinstance(described[0], Mapping) else None
        try:
            if name and canonical_band(name) == band:
                return key
        except InvalidParameterError:
            continue
    raise ProductFormatError(
        f"STAC item {item.id} has no asset for band {band}; its assets are "
        f"{', '.join(sorted(item.assets))}. Expected a key such as {band!r} or "
        f"{_EARTH_SEARCH_KEYS[band]!r}; choose bands the collection has (--bands)."
    )


def _flag(props: Mapping[str, Any], *keys: str) -> bool | None:
    for key in keys:
        if key in props and props[key] is not None:
            return bool(props[key])
    return None


def band_radiometry(item: pystac.Item, asset_key: str) -> BandRadiometry:
    """Scale, offset and nodata of one asset, from the item's metadata (see the module doc)."""
    props = _props(item)
    extra = item.assets[asset_key].extra_fields
    rb = (extra.get("raster:bands") or [{}])[0] or {}
    nodata = rb.get("nodata", 0)
    nodata = None if nodata is None or (isinstance(nodata, float) and math.isnan(nodata)) else float(nodata)
    scale = float(rb.get("scale", _DEFAULT_SCALE))
    if _flag(props, "earthsearch:boa_offset_applied", "sentinel:boa_offset_applied"):
        return BandRadiometry(scale, 0.0, nodata, "earthsearch:boa_offset_applied")
    if "offset" in rb or "scale" in rb:
        return BandRadiometry(scale, float(rb.get("offset", 0.0)), nodata, "raster:bands")
    baseline = processing_baseline(item)
    if baseline is None:
        raise ProductFormatError(
            f"STAC item {item.id} gives neither raster:bands scale/offset nor a processing baseline "
            "(s2:processing_baseline or _NXXXX_ in its product name); s2mask cannot tell whether "
            "its pixels carry the -1000 offset of baseline 04.00. Use a collection whose items say."
        )
    offset = _BASELINE_OFFSET if baseline >= "04.00" else 0.0
    return BandRadiometry(scale, offset, nodata, f"baseline {baseline}")


def _self_href(item: pystac.Item) -> str:
    link = item.get_single_link("self")
    return (link.get_target_str() if link is not None else None) or item.id


def parse_item(item: pystac.Item, *, bands: Sequence[str] = (), preset: StacPreset | None = None) -> ItemInfo:
    """Read CRS, level, baseline, cloud cover and the asset key and radiometry of ``bands``."""
    keys = {canonical_band(b): asset_key_for_band(item, b, preset) for b in bands}
    props = _props(item)
    cloud = props.get("eo:cloud_cover")
    return ItemInfo(
        id=item.id,
        collection=item.collection_id,
        datetime=item.datetime,
        crs=item_crs(item),
        level=item_level(item),
        processing_baseline=processing_baseline(item),
        cloud_cover=None if cloud is None else float(cloud),
        assets=keys,
        radiometry={b: band_radiometry(item, k) for b, k in keys.items()},
        source=_self_href(item),
    )


def _scheme(href: str) -> str:
    scheme = urlparse(href).scheme.lower()
    return "file" if len(scheme) <= 1 else scheme  # "" for paths, "c" for C:\ paths


def check_href_schemes(
    item: pystac.Item, asset_keys: Sequence[str], allowed_schemes: Sequence[str] = DEFAULT_SCHEMES
) -> None:
    """Refuse to open an asset whose href scheme the user did not allow."""
    allowed = {s.lower() for s in allowed_schemes}
    for key in asset_keys:
        href = item.assets[key].href
        scheme = _scheme(href)
        if scheme not in allowed:
            raise StacError(
                f"Asset {key!r} of STAC item {item.id} has href {href!r} with scheme {scheme!r}, which "
                f"is not allowed (allowed: {', '.join(sorted(allowed))}); allow it explicitly "
                "(allowed_schemes / --allow-scheme) only if you trust the catalogue."
            )


def sign_item(item: pystac.Item, preset: StacPreset | None) -> pystac.Item:
    """Sign the hrefs of a Planetary Computer item when the ``planetary-computer`` package is installed."""
    if preset is None or not preset.sign:
        return item
    try:
        import planetary_computer
    except ImportError:
        log.warning(
            "Item %s comes from %s, whose assets need signed URLs, but the planetary-computer package "
            "is not installed; reads may fail with 403 (pip install planetary-computer).",
            item.id,
            preset.name,
        )
        return item
    return planetary_computer.sign(item)


def _signs(preset: StacPreset | None) -> bool:
    """Whether hrefs of ``preset`` are signed here (its provider needs it and planetary-computer is installed)."""
    import importlib.util

    return preset is not None and preset.sign and importlib.util.find_spec("planetary_computer") is not None


def _resign_url(url: str) -> str:
    """A freshly signed Planetary Computer URL for ``url`` (whose token may have expired)."""
    import planetary_computer

    return planetary_computer.sign(public_url(url))


# ---------------------------------------------------------------- loading


def _to_reflectance(dn: xr.DataArray, info: ItemInfo) -> xr.DataArray:
    """``DN * scale + offset`` clipped to [0, 1] per band, nodata to NaN; stays lazy.

    Computed by the readers' one conversion (:func:`s2mask.io._lazy.dn_to_reflectance`), so an
    item's pixels equal the same DN read from a SAFE product or a GeoTIFF, bit for bit.
    """
    import numpy as np

    from s2mask.io._lazy import dn_to_reflectance

    rad = [info.radiometry[b] for b in dn["band"].values]
    bad = [
        b for b, r in zip(dn["band"].values, rad, strict=True) if not (np.isfinite(r.scale) and r.scale != 0)
    ]
    if bad:
        raise ProductFormatError(
            f"STAC item {info.id} gives band(s) {', '.join(map(str, bad))} a scale of 0 or not a number; "
            "expected raster:bands scale like 0.0001. Fix the item's metadata or use another catalogue."
        )
    data = dn.data.rechunk({0: -1}).map_blocks(
        dn_to_reflectance,
        [r.offset / r.scale for r in rad],
        [1.0 / r.scale for r in rad],
        [r.nodata for r in rad],
        dtype=np.float32,
        meta=np.empty((0, 0, 0), np.float32),
    )
    return dn.copy(data=data)


def _whole_tile_geobox(item: pystac.Item, info: ItemInfo, resolution: float) -> Any:
    """The tile's footprint on the requested grid, from the finest band's proj:transform/shape."""
    from odc.geo.geobox import GeoBox

    best = None
    for key in info.assets.values():
        extra = item.assets[key].extra_fields
        shape, tr = extra.get("proj:shape"), extra.get("proj:transform")
        if shape and tr:
            res = abs(float(tr[0]))
            if best is None or res < best[0]:
                best = (res, shape, tr)
    if best is None:
        return None
    _, (rows, cols), tr = best
    left, top = float(tr[2]), float(tr[5])
    right, bottom = left + cols * float(tr[0]), top + rows * float(tr[4])
    return GeoBox.from_bbox((left, bottom, right, top), info.crs, resolution=resolution, tight=True)


def _check_resampling(resampling: str) -> str:
    from s2mask.io._lazy import RESAMPLING

    if resampling not in RESAMPLING:
        raise InvalidParameterError(
            f"resampling={resampling!r}; expected one of {', '.join(RESAMPLING)} (nearest is every reader's default)."
        )
    return resampling


def open_stac_item(
    item: pystac.Item,
    *,
    bands: Sequence[str],
    resolution: float = 10,
    bbox: BBox | Sequence[float] | str | None = None,
    chunks: int = 2048,
    preset: StacPreset | None = None,
    allowed_schemes: Sequence[str] = DEFAULT_SCHEMES,
    remote: RemoteReads | None = None,
    resampling: str = "nearest",
) -> xr.DataArray:
    """Load one Sentinel-2 item lazily as reflectance, the contract every s2mask reader keeps.

    Returns a dask-backed ``xr.DataArray`` with dims ``("band", "y", "x")`` in the item's
    own CRS (UTM) at ``resolution`` metres, band coordinate = ESA names in the order of
    ``bands``, float32 reflectance ``DN * scale + offset`` clipped to [0, 1] with NaN where
    the DN is nodata.  Bands reach ``resolution`` by ``resampling`` (``nearest``, the default
    of every reader, ``bilinear`` or ``average``).
    ``bbox`` (WGS84 W,S,E,N) crops to the area; ``None`` loads the whole tile.  Nothing
    is read until the array is computed.  Remote assets are read with the GDAL settings of
    ``remote`` (timeouts, retries with backoff, no directory listing; defaults when
    ``None``); the dask graph carries them to whichever thread or worker reads a block.

    Attributes: ``product_id`` (item id), ``level``, ``processing_baseline``, ``source``
    (self href or id), ``datetime`` (ISO), ``collection``, ``cloud_cover``.

    Raises:
        ProductFormatError: a band's asset, the CRS or the radiometry cannot be found.
        StacError: an asset href uses a scheme outside ``allowed_schemes``.
        InvalidParameterError: bad ``bbox``, ``resolution`` or ``chunks``.
        RemoteReadError: (on compute) an asset keeps failing to read; the message names its URL
            and HTTP status.
    """
    import odc.stac
    import rioxarray  # noqa: F401 - registers .rio

    # normalise arguments
    if not (isinstance(resolution, (int, float)) and resolution > 0):
        raise InvalidParameterError(f"The resolution {resolution!r} is not a positive number of metres.")
    if int(chunks) < 64:
        raise InvalidParameterError(f"The chunk size {chunks} is too small; expected at least 64 pixels.")
    box = None if bbox is None else parse_bbox(bbox)
    bands = tuple(canonical_band(b) for b in bands)
    preset = preset or preset_for_item(item)
    info = parse_item(item, bands=bands, preset=preset)
    keys = [info.assets[b] for b in bands]
    check_href_schemes(item, keys, allowed_schemes)
    # only the assets to read: odc-stac also matches band aliases ("blue" is band 3 of
    # "visual" by eo:common_name), and which alias wins would depend on set ordering
    item = item.clone()
    item.assets = {k: item.assets[k] for k in keys}
    item = sign_item(item, preset)

    # the pixel grid: the bbox on the item's UTM grid, or the whole tile
    grid: dict[str, Any] = {"crs": info.crs, "resolution": resolution}
    if box is not None:
        grid["bbox"] = box.as_tuple()
    else:
        geobox = _whole_tile_geobox(item, info, resolution)
        grid = {"geobox": geobox} if geobox is not None else grid

    # lazy load, one time step; the driver carries the remote-read settings into the graph
    ds = odc.stac.load(
        [item],
        bands=keys,
        chunks={"x": int(chunks), "y": int(chunks)},
        resampling=_check_resampling(resampling),
        fail_on_error=True,
        driver=reader_driver(remote, resign=_resign_url if _signs(preset) else None),
        **grid,
    )
    ds = ds.isel(time=0, drop=True) if "time" in ds.dims else ds
    dn = ds[keys].to_array("band").assign_coords(band=list(bands)).chunk({"band": -1})
    cube = _to_reflectance(dn, info).transpose("band", "y", "x")
    cube = cube.rio.write_crs(info.crs)
    cube.name = "reflectance"
    cube.attrs = {
        "product_id": info.id,
        "level": info.level,
        "processing_baseline": info.processing_baseline or "",
        "source": info.source,
        "datetime": info.datetime.isoformat() if info.datetime else "",
        "collection": info.collection or "",
        "cloud_cover": "" if info.cloud_cover is None else info.cloud_cover,
    }
    return cube


# ---------------------------------------------------------------- searching


_RETRY_STATUS = (429, 500, 502, 503, 504)


def _stac_io(timeout: float, retries: int, backoff: float) -> Any:
    from pystac_client.stac_api_io import StacApiIO
    from urllib3.util.retry import Retry

    retry = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=backoff,
        status_forcelist=_RETRY_STATUS,
        allowed_methods=None,  # POST /search is idempotent
        raise_on_status=False,
    )
    return StacApiIO(timeout=timeout, max_retries=retry)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().replace("\n", " ")
    if len(text) > 300:
        text = text[:300] + "..."
    status = getattr(exc, "status_code", None)
    name = f"HTTP {status}" if status else type(exc).__name__
    return f"{name}: {text}" if text else name


def _server_filter(client: Any, max_cloud: float) -> dict[str, Any]:
    """Cloud cover as a ``query`` or ``filter`` argument when the API conforms, else nothing."""
    from pystac_client.conformance import ConformanceClasses

    if client.conforms_to(ConformanceClasses.QUERY):
        return {"query": {"eo:cloud_cover": {"lte": max_cloud}}}
    if client.conforms_to(ConformanceClasses.FILTER):
        return {
            "filter": {"op": "<=", "args": [{"property": "eo:cloud_cover"}, max_cloud]},
            "filter_lang": "cql2-json",
        }
    return {}


def _keep(item: pystac.Item, max_cloud: float | None, dates: DateRange) -> bool:
    if item.datetime is not None and not dates.contains(item.datetime):
        return False
    if max_cloud is None:
        return True
    cloud = _props(item).get("eo:cloud_cover")
    return cloud is not None and float(cloud) <= max_cloud


def search_items(
    *,
    url: str,
    collection: str,
    bbox: BBox | Sequence[float] | str,
    date: DateRange | str,
    max_cloud: float | None = None,
    limit: int | None = None,
    timeout: float = 30,
    retries: int = 3,
    backoff: float = 0.5,
    page_size: int = 100,
) -> list[pystac.Item]:
    """Search ``collection`` at the STAC API ``url``; items sorted by datetime then id.

    Cloud cover (``eo:cloud_cover`` <= ``max_cloud`` percent) is sent to the server when
    it conforms to the query or filter extension and checked on the client in any case;
    items without ``eo:cloud_cover`` are dropped when ``max_cloud`` is given.  Timeouts,
    connection errors and 429/5xx answers are retried ``retries`` times with
    exponential backoff.  ``limit`` caps the number of items; ``page_size`` is the
    number asked for per request (further pages follow the API's ``next`` links).

    Raises:
        InvalidParameterError: bad bbox, date range, ``max_cloud`` or ``limit``.
        StacError: the API cannot be reached, keeps failing, or answers something that is not STAC.
        EmptySearchError: nothing matched.
    """
    from pystac_client import Client

    box, dates = parse_bbox(bbox), parse_date_range(date)
    if max_cloud is not None and not (0 <= float(max_cloud) <= 100):
        raise InvalidParameterError(f"max_cloud {max_cloud} is outside 0..100 (percent of the scene).")
    if limit is not None and int(limit) < 1:
        raise InvalidParameterError(f"limit {limit} must be at least 1 (or omitted for no limit).")
    if urlparse(url).scheme not in ("http", "https"):
        raise InvalidParameterError(f"The STAC API URL {url!r} must start with http:// or https://.")
    what = f"collection {collection!r} at {url}"
    try:
        client = Client.open(url, stac_io=_stac_io(timeout, retries, backoff), timeout=timeout)
        extra = _server_filter(client, float(max_cloud)) if max_cloud is not None else {}
        search = client.search(
            collections=[collection],
            bbox=box.as_tuple(),
            datetime=dates.to_stac(),
            max_items=None if extra == {} and max_cloud is not None else limit,
            limit=min(int(limit), page_size) if limit else page_size,
            **extra,
        )
        found: list[pystac.Item] = []
        for item in search.items():
            if _keep(item, max_cloud, dates):
                found.append(item)
                if limit and len(found) >= int(limit):
                    break
    except Exception as exc:  # noqa: BLE001 - pystac-client raises APIError, requests errors, JSON errors
        if isinstance(exc, (InvalidParameterError, KeyboardInterrupt)):
            raise
        raise StacError(
            f"Searching {what} failed ({_describe(exc)}; timeouts, connection errors and 5xx answers "
            f"were retried up to {retries} times); check the URL and your network, or try again "
            "later (--timeout, --retries)."
        ) from exc
    if not found:
        cloud = f", eo:cloud_cover <= {max_cloud:g}%" if max_cloud is not None else ""
        raise EmptySearchError(
            f"No items in {what} intersect bbox {box} within {dates.to_stac()}{cloud}; "
            "widen the bbox or the dates, raise --max-cloud, or check the collection id."
        )
    found.sort(key=lambda it: (it.datetime.isoformat() if it.datetime else "", it.id))
    return found
