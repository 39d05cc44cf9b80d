"""Reading Sentinel-2 L1C and L2A products in the SAFE format (folder or zip) as lazy reflectance.

A zipped product is read in place through GDAL's ``/vsizip/``; nothing is extracted.
DN become reflectance as the product's own metadata says::

    reflectance = (DN + RADIO_ADD_OFFSET | BOA_ADD_OFFSET) / QUANTIFICATION_VALUE

(the offset is -1000 from processing baseline 04.00 on and absent before), DN 0 is
nodata (NaN) and the result is clipped to [0, 1], so saturated pixels (65535) read 1.0.
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NoReturn

import xarray as xr
from affine import Affine

from s2mask.bands import BAND_NAMES, BANDS, resolve_bands
from s2mask.errors import (
    BandMismatchError,
    CorruptDataError,
    InvalidParameterError,
    ProductFormatError,
    ProductNotFoundError,
)
from s2mask.io._lazy import BandSource, LazyReflectance, check_readable, to_dataarray
from s2mask.io._xml import ProductMetadata, TileGeocoding, parse_product_metadata, parse_tile_metadata

__all__ = ["RESOLUTIONS", "SafeLayout", "open_safe", "find_safe_layout"]

RESOLUTIONS = (10, 20, 60)
"""Grids a SAFE product can be read on (metres)."""

_MTD = re.compile(r"(^|/)MTD_MSIL(1C|2A)\.xml$")
_OLD_MTD = re.compile(r"(^|/)S2[AB]_OPER_MTD_SAFL(1C|2A)_.*\.xml$")


class _Files:
    """The files of a SAFE product, whether a folder or a zip: names relative to the SAFE root."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zipped = path.is_file()
        if self.zipped:
            try:
                with zipfile.ZipFile(path) as zf:
                    names = [n for n in zf.namelist() if not n.endswith("/")]
            except (zipfile.BadZipFile, OSError) as exc:
                raise CorruptDataError(
                    f"{path} is not a readable zip archive ({exc}); expected a zipped .SAFE product. "
                    "Download it again."
                ) from exc
            self.root = self._zip_root(names)
            self.names = [n[len(self.root) :] for n in names if n.startswith(self.root)]
        else:
            self.root = ""
            top = [p.name for p in path.iterdir() if p.is_file()]
            if not any(_MTD.fullmatch(n) for n in top):
                self._no_metadata(top)
            self.names = top + [
                str(PurePosixPath(Path(d).relative_to(path), f))
                for d, _, fs in os.walk(path / "GRANULE")
                for f in fs
            ]

    def _zip_root(self, names: list[str]) -> str:
        mtds = sorted((n for n in names if _MTD.search(n)), key=lambda n: n.count("/"))
        if not mtds:
            self._no_metadata(names)
        return mtds[0].rsplit("/", 1)[0] + "/" if "/" in mtds[0] else ""

    def _no_metadata(self, names: list[str]) -> NoReturn:
        if any(_OLD_MTD.search(n) for n in names):
            raise ProductFormatError(
                f"{self.path} is an old-format (pre-2016, multi-tile) SAFE product; s2mask reads the compact "
                "SAFE format (MTD_MSIL1C.xml / MTD_MSIL2A.xml). Download the product in its current format."
            )
        raise ProductFormatError(
            f"{self.path} holds no MTD_MSIL1C.xml or MTD_MSIL2A.xml; expected a Sentinel-2 .SAFE product "
            "(folder or zip). Pass the .SAFE folder or the zip downloaded from Copernicus."
        )

    def read_bytes(self, name: str) -> bytes:
        try:
            if self.zipped:
                with zipfile.ZipFile(self.path) as zf:
                    return zf.read(self.root + name)
            return (self.path / name).read_bytes()
        except (OSError, zipfile.BadZipFile, KeyError) as exc:
            raise CorruptDataError(
                f"Cannot read {name} in {self.path} ({exc}); download the product again."
            ) from exc

    def gdal_path(self, name: str) -> str:
        if self.zipped:
            return f"/vsizip/{self.path}/{self.root}{name}"
        return str(self.path / name)


@dataclass(frozen=True)
class SafeLayout:
    """Where things are in one SAFE product."""

    product_id: str
    """Product name without ``.SAFE``."""
    metadata: ProductMetadata
    """Parsed ``MTD_MSIL*.xml``."""
    tile: TileGeocoding
    """Parsed ``GRANULE/*/MTD_TL.xml``."""
    band_files: dict[str, dict[int, str]]
    """ESA band name -> {resolution (m): GDAL path}; L1C has only the native resolution."""


def find_safe_layout(path: str | os.PathLike[str]) -> SafeLayout:
    """Parse the metadata of the SAFE product at ``path`` and list its band files."""
    path = Path(path).expanduser().absolute()
    if not path.exists():
        raise ProductNotFoundError(f"The product {path} does not exist; check the path.")
    files = _Files(path)
    mtd = next((n for n in files.names if n in ("MTD_MSIL1C.xml", "MTD_MSIL2A.xml")), None)
    if mtd is None:
        files._no_metadata(files.names)
    meta = parse_product_metadata(files.read_bytes(mtd), f"{path}/{mtd}")
    granules = sorted(
        {n.split("/")[1] for n in files.names if n.startswith("GRANULE/") and n.count("/") >= 2}
    )
    if len(granules) != 1:
        raise ProductFormatError(
            f"{path} has {len(granules)} granules in GRANULE/ ({', '.join(granules) or 'none'}); expected exactly "
            "one (a compact single-tile product). Pass a complete single-tile product."
        )
    tl = f"GRANULE/{granules[0]}/MTD_TL.xml"
    if tl not in files.names:
        raise ProductFormatError(
            f"{path} has no {tl}; expected the tile metadata. The product is incomplete."
        )
    tile = parse_tile_metadata(files.read_bytes(tl), f"{path}/{tl}")
    return SafeLayout(
        product_id=_product_id(path, files, meta),
        metadata=meta,
        tile=tile,
        band_files=_band_files(files, granules[0], meta.level),
    )


def _product_id(path: Path, files: _Files, meta: ProductMetadata) -> str:
    if meta.product_uri:
        return meta.product_uri.removesuffix(".SAFE")
    name = files.root.rstrip("/").rsplit("/", 1)[-1] if files.zipped and files.root else path.name
    return name.removesuffix(".zip").removesuffix(".SAFE")


def _band_files(files: _Files, granule: str, level: str) -> dict[str, dict[int, str]]:
    prefix = f"GRANULE/{granule}/IMG_DATA/"
    pattern = (
        re.compile(r"R(\d\d)m/[^/]*_(B\d[\dA])_(\d\d)m\.jp2$")
        if level == "L2A"
        else re.compile(r"[^/]*_(B\d[\dA])\.jp2$")
    )
    found: dict[str, dict[int, str]] = {}
    for name in files.names:
        if not name.startswith(prefix):
            continue
        m = pattern.fullmatch(name[len(prefix) :])
        if not m:
            continue
        if level == "L2A":
            band, res = m.group(2), int(m.group(3))
        else:
            band, res = m.group(1), BANDS.get(m.group(1), BANDS["B01"]).resolution
        if band in BANDS:
            found.setdefault(band, {})[res] = files.gdal_path(name)
    return found


def _pick_file(band: str, available: dict[int, str], resolution: int) -> tuple[int, str]:
    """The file to read ``band`` from for a ``resolution`` grid (exact grid first, then native, then coarser)."""
    native = BANDS[band].resolution
    order = ([resolution] if resolution >= native else []) + [native] + [r for r in RESOLUTIONS if r > native]
    order += [r for r in sorted(available) if r not in order]
    res = next(r for r in order if r in available)
    return res, available[res]


def _require_native_file(
    product: str | os.PathLike[str], band: str, res: int, found: str, resolution: int
) -> None:
    """A Level-2A product ships every band at its native resolution: refuse a silent fall-back to a coarser copy."""
    native = BANDS[band].resolution
    if res <= max(native, resolution):
        return
    folder, name = found.rsplit("/", 2)[-2:]
    expected = f"R{native}m/{name.replace(f'_{res}m.', f'_{native}m.')}"
    raise ProductFormatError(
        f"{product} lacks {expected}, its {band} band at the native {native} m (only {folder}/{name} at {res} m "
        f"is there); expected a complete Level-2A product. Download the product again, or read it on the "
        f"{res} m grid (--resolution {res})."
    )


def _grid(tile: TileGeocoding, resolution: int) -> tuple[tuple[int, int], Affine]:
    ulx, uly = tile.origins.get(resolution) or tile.origins.get(10) or next(iter(tile.origins.values()))
    if resolution in tile.sizes:
        shape = tile.sizes[resolution]
    else:
        base_res, (rows, cols) = min(tile.sizes.items())
        shape = (-(-rows * base_res // resolution), -(-cols * base_res // resolution))
    return shape, Affine(resolution, 0.0, ulx, 0.0, -resolution, uly)


def open_safe(
    path: str | os.PathLike[str],
    *,
    bands: str | tuple[str, ...] | list[str] | None = None,
    resolution: int = 10,
    resampling: str = "nearest",
    chunks: int | tuple[int, int] = 2048,
) -> xr.DataArray:
    """Open a Sentinel-2 L1C/L2A ``.SAFE`` folder or zipped ``.SAFE`` as lazy reflectance.

    Returns a dask-backed float32 ``xr.DataArray`` with dims ``("band", "y", "x")`` on the
    ``resolution`` m tile grid (10, 20 or 60), chunked ``(all bands, chunks, chunks)``, with
    band names in ESA order (or the order of ``bands``), CRS and transform attached and attrs
    ``product_id``, ``level``, ``processing_baseline`` and ``source``.  Nothing is read at
    open time except metadata, file headers and one pixel per file (to catch truncation).

    Raises:
        ProductNotFoundError, ProductFormatError, CorruptDataError, BandMismatchError,
        InvalidParameterError (see :mod:`s2mask.errors`).
    """
    if resolution not in RESOLUTIONS:
        raise InvalidParameterError(
            f"resolution is {resolution!r}; a SAFE product can be read at 10, 20 or 60 m. Pick one of those."
        )
    layout = find_safe_layout(path)
    names = _select_bands(layout, bands)
    shape, transform = _grid(layout.tile, resolution)
    meta = layout.metadata
    sources = []
    stat_path = str(Path(path).expanduser().absolute()) if Path(path).is_file() else ""
    for band in names:
        res, gdal_path = _pick_file(band, layout.band_files[band], resolution)
        if meta.level == "L2A":
            _require_native_file(path, band, res, gdal_path, resolution)
        file_shape, file_res, _, _ = check_readable(gdal_path)
        _check_extent(gdal_path, file_shape, file_res, shape, resolution)
        sources.append(
            BandSource(
                path=gdal_path,
                index=1,
                shape=file_shape,
                res=file_res,
                add=meta.offset(band),
                divisor=meta.quantification,
                nodata=meta.nodata,
                stat_path=stat_path,
            )
        )
    reader = LazyReflectance(tuple(sources), shape, (float(resolution), float(resolution)), resampling)
    attrs = {
        "product_id": layout.product_id,
        "level": meta.level,
        "processing_baseline": meta.processing_baseline,
        "source": str(Path(path).expanduser().absolute()),
    }
    token = [(s.path, _mtime(path)) for s in sources]
    return to_dataarray(
        reader,
        band_names=names,
        transform=transform,
        crs=layout.tile.crs,
        chunks=chunks,
        attrs=attrs,
        token=token,
    )


def _select_bands(layout: SafeLayout, bands: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    have = tuple(b for b in BAND_NAMES if b in layout.band_files)
    if not have:
        raise ProductFormatError(
            f"The product {layout.product_id} has no band files (IMG_DATA/*_Bxx.jp2); the product is incomplete. "
            "Download it again."
        )
    if bands is None:
        return have
    names = resolve_bands(bands)
    missing = [b for b in names if b not in layout.band_files]
    if missing:
        raise BandMismatchError(
            f"The {layout.metadata.level} product {layout.product_id} lacks band(s) {', '.join(missing)}; "
            f"it has {', '.join(have)}. Choose bands the product has (L2A products have no B10) or a model "
            "that does not need them."
        )
    return names


def _check_extent(
    gdal_path: str,
    file_shape: tuple[int, int],
    file_res: tuple[float, float],
    grid_shape: tuple[int, int],
    resolution: int,
) -> None:
    for axis, name in ((0, "height"), (1, "width")):
        file_extent = file_shape[axis] * file_res[axis]
        grid_extent = grid_shape[axis] * resolution
        if abs(file_extent - grid_extent) > max(file_res[axis], resolution):
            raise CorruptDataError(
                f"{gdal_path} covers {file_extent:g} m in {name} but MTD_TL.xml says the tile covers "
                f"{grid_extent:g} m; the band file does not belong to this tile or is damaged. Download the "
                "product again."
            )


def _mtime(path: str | os.PathLike[str]) -> float:
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return 0.0
