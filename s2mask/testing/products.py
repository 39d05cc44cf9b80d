"""Write real-layout Sentinel-2 products from reflectance arrays, for tests, demos and benchmarks.

:func:`write_safe` writes a compact SAFE product (L1C or L2A) the way ESA lays it out:
``manifest.safe``, ``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml`` with the real element names,
``GRANULE/<id>/MTD_TL.xml`` with the tile geocoding and real JPEG 2000 band files
(lossless, written by GDAL's JP2OpenJPEG driver) at each band's native resolution.
DN follow the processing baseline: ``DN = reflectance * quantification - offset`` with
``offset = -1000`` from baseline 04.00 on (0 before), and DN 0 where data are missing.
:func:`write_geotiff` writes a tiled multiband uint16 GeoTIFF with band descriptions.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

from s2mask.bands import BAND_NAMES, BANDS, canonical_band
from s2mask.errors import InvalidParameterError, OutputExistsError

__all__ = [
    "DEFAULT_TRANSFORM",
    "L2A_RESOLUTION_BANDS",
    "baseline_offset",
    "block_mean",
    "reflectance_to_dn",
    "safe_name",
    "write_geotiff",
    "write_safe",
]

DEFAULT_TRANSFORM = Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 1300020.0)
"""A 10 m north-up grid at the upper-left corner of a UTM tile."""

DEFAULT_DATE = datetime(2020, 1, 1, 10, 10, 31)

L2A_RESOLUTION_BANDS: dict[int, tuple[str, ...]] = {
    10: ("B02", "B03", "B04", "B08"),
    20: ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B11", "B12"),
    60: ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B09", "B11", "B12"),
}
"""Which bands an L2A product holds in IMG_DATA/R10m, R20m and R60m (no B10 at L2A; B01 also at 20 m)."""

_JP2_OPTIONS = {"QUALITY": "100", "REVERSIBLE": "YES", "YCBCR420": "NO"}


def baseline_offset(baseline: str) -> int:
    """The DN offset ESA adds from processing baseline 04.00 on: ``-1000``, else ``0``."""
    try:
        major, minor = (int(p) for p in baseline.split("."))
    except ValueError:
        raise InvalidParameterError(f"baseline is {baseline!r}; expected 'NN.NN', e.g. '05.09'.") from None
    return -1000 if (major, minor) >= (4, 0) else 0


def block_mean(a: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor`` x ``factor`` blocks of the last two axes (sizes must divide)."""
    if factor == 1:
        return a
    *lead, h, w = a.shape
    return a.reshape(*lead, h // factor, factor, w // factor, factor).mean(axis=(-3, -1))


def block_any(mask: np.ndarray, factor: int) -> np.ndarray:
    """True where any pixel of a ``factor`` x ``factor`` block is true."""
    if factor == 1:
        return mask
    h, w = mask.shape
    return mask.reshape(h // factor, factor, w // factor, factor).any(axis=(1, 3))


def reflectance_to_dn(
    refl: np.ndarray, *, quantification: float = 10000, offset: float = 0, nodata: np.ndarray | None = None
) -> np.ndarray:
    """``round(reflectance * quantification - offset)`` as uint16 in 1..65535, 0 where ``nodata`` (or NaN)."""
    refl = np.asarray(refl, dtype=np.float64)
    missing = ~np.isfinite(refl) if nodata is None else (nodata | ~np.isfinite(refl))
    dn = np.clip(np.rint(np.nan_to_num(refl) * quantification - offset), 1, 65535).astype(np.uint16)
    dn[missing] = 0
    return dn


def safe_name(
    *, level: str, baseline: str, tile_id: str, date: datetime, spacecraft: str = "S2B", orbit: int = 22
) -> str:
    """A product name in ESA's compact naming convention (without ``.SAFE``)."""
    stamp = date.strftime("%Y%m%dT%H%M%S")
    return f"{spacecraft}_MSI{level}_{stamp}_N{baseline.replace('.', '')}_R{orbit:03d}_{tile_id}_{stamp}"


def _check_inputs(
    reflectance: np.ndarray,
    band_names: tuple[str, ...],
    transform: Affine,
    level: str,
    nodata_mask: np.ndarray | None,
) -> np.ndarray:
    refl = np.asarray(reflectance, dtype=np.float32)
    if refl.ndim != 3 or refl.shape[0] != len(band_names):
        raise InvalidParameterError(
            f"reflectance has shape {refl.shape}; expected ({len(band_names)}, H, W), one plane per band name."
        )
    if refl.shape[1] % 6 or refl.shape[2] % 6:
        raise InvalidParameterError(
            f"reflectance is {refl.shape[1]} x {refl.shape[2]} px; expected multiples of 6 so the 20 m and 60 m "
            "bands tile the 10 m grid exactly. Crop it."
        )
    if (transform.a, transform.b, transform.d, transform.e) != (10, 0, 0, -10):
        raise InvalidParameterError(f"transform is {tuple(transform)[:6]}; expected a 10 m north-up Affine.")
    if level not in ("L1C", "L2A"):
        raise InvalidParameterError(f"level is {level!r}; expected 'L1C' or 'L2A'.")
    if nodata_mask is not None and np.shape(nodata_mask) != refl.shape[1:]:
        raise InvalidParameterError(
            f"nodata_mask has shape {np.shape(nodata_mask)}; expected {refl.shape[1:]}."
        )
    return refl


def write_safe(
    out_dir: str | os.PathLike[str],
    reflectance: np.ndarray,
    *,
    level: str = "L2A",
    baseline: str = "05.09",
    crs: str = "EPSG:32631",
    transform: Affine = DEFAULT_TRANSFORM,
    band_names: tuple[str, ...] = BAND_NAMES,
    nodata_mask: np.ndarray | None = None,
    zipped: bool = False,
    product_id: str | None = None,
    quantification: int = 10000,
    tile_id: str = "T31PDR",
    date: datetime = DEFAULT_DATE,
    all_resolutions: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write ``reflectance`` (``(bands, H, W)`` float at 10 m, H and W multiples of 6) as a SAFE product.

    Each band is written at its native resolution (20 m and 60 m bands by block mean);
    for L2A with ``all_resolutions`` the coarser ``R20m``/``R60m`` copies ESA ships are
    written too.  ``B10`` is skipped at L2A (Sen2Cor drops it).  ``nodata_mask`` (H, W)
    marks missing pixels (DN 0).  Returns ``out_dir/<product_id>.SAFE`` (or ``.zip``);
    the product appears complete or not at all.
    """
    names = tuple(canonical_band(b) for b in band_names)
    refl = _check_inputs(reflectance, names, transform, level, nodata_mask)
    offset = baseline_offset(baseline)
    product_id = product_id or safe_name(level=level, baseline=baseline, tile_id=tile_id, date=date)
    out_dir = Path(out_dir)
    target = out_dir / f"{product_id}.SAFE{'.zip' if zipped else ''}"
    if target.exists() and not overwrite:
        raise OutputExistsError(f"{target} already exists; pass overwrite=True or choose another folder.")
    out_dir.mkdir(parents=True, exist_ok=True)
    missing = np.zeros(refl.shape[1:], bool) if nodata_mask is None else np.asarray(nodata_mask, bool)
    spec = _ProductSpec(
        product_id=product_id,
        level=level,
        baseline=baseline,
        crs=CRS.from_user_input(crs),
        transform=transform,
        shape=tuple(refl.shape[1:]),
        quantification=quantification,
        offset=offset,
        tile_id=tile_id,
        date=date,
    )
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=f".{product_id}.", suffix=".tmp") as tmp:
        root = Path(tmp) / f"{product_id}.SAFE"
        image_files = _write_bands(root, spec, dict(zip(names, refl, strict=True)), missing, all_resolutions)
        _write_metadata(root, spec, image_files)
        staged = Path(tmp) / target.name
        if zipped:
            _zip_tree(root, staged)
        else:
            staged = root
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        os.replace(staged, target)
    return target


@dataclass(frozen=True)
class _ProductSpec:
    """Everything the band writer and the metadata templates need."""

    product_id: str
    level: str
    baseline: str
    crs: CRS
    transform: Affine
    shape: tuple[int, int]
    quantification: int
    offset: int
    tile_id: str
    date: datetime

    @property
    def stamp(self) -> str:
        return self.date.strftime("%Y%m%dT%H%M%S")

    @property
    def iso(self) -> str:
        return self.date.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    @property
    def granule(self) -> str:
        return f"{self.level}_{self.tile_id}_A012345_{self.stamp}"

    @property
    def datastrip(self) -> str:
        return f"DS_2BPS_{self.stamp}_S{self.stamp}"


def _write_bands(
    root: Path, spec: _ProductSpec, planes: dict[str, np.ndarray], missing: np.ndarray, all_resolutions: bool
) -> list[str]:
    """Write the JP2 band files; return their paths (relative to ``root``, without ``.jp2``)."""
    img = root / "GRANULE" / spec.granule / "IMG_DATA"
    jobs: list[tuple[str, int, Path]] = []
    for band in (b for b in BAND_NAMES if b in planes):
        native = BANDS[band].resolution
        if spec.level == "L1C":
            jobs.append((band, native, img / f"{spec.tile_id}_{spec.stamp}_{band}.jp2"))
            continue
        if band == "B10":
            continue
        for res, members in L2A_RESOLUTION_BANDS.items():
            if band in members and (res == native or all_resolutions):
                jobs.append((band, res, img / f"R{res}m" / f"{spec.tile_id}_{spec.stamp}_{band}_{res}m.jp2"))
    written = []
    for band, res, path in jobs:
        factor = max(res, BANDS[band].resolution) // 10  # B01 at 20 m is its 60 m signal, upsampled
        dn = reflectance_to_dn(
            block_mean(planes[band], factor),
            quantification=spec.quantification,
            offset=spec.offset,
            nodata=block_any(missing, factor),
        )
        up = factor * 10 // res
        dn = np.repeat(np.repeat(dn, up, axis=0), up, axis=1)
        _write_jp2(path, dn, spec.crs, spec.transform @ Affine.scale(res // 10))
        written.append(str(path.relative_to(root).with_suffix("")))
    return written


def _write_jp2(path: Path, dn: np.ndarray, crs: CRS, transform: Affine) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "JP2OpenJPEG",
        "width": dn.shape[1],
        "height": dn.shape[0],
        "count": 1,
        "dtype": "uint16",
        "crs": crs,
        "transform": transform,
        **_JP2_OPTIONS,
    }
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(dn, 1)
    for side in path.parent.glob(path.name + ".aux.xml"):
        side.unlink()


def _zip_tree(root: Path, zip_path: Path) -> None:
    with zipfile.ZipFile(zip_path, "w") as zf:
        for dirpath, dirnames, filenames in sorted(os.walk(root)):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(root.parent)
            zf.write(dirpath, str(rel_dir) + "/")
            for name in sorted(filenames):
                method = zipfile.ZIP_STORED if name.endswith(".jp2") else zipfile.ZIP_DEFLATED
                zf.write(Path(dirpath) / name, str(rel_dir / name), compress_type=method)


def _write_metadata(root: Path, spec: _ProductSpec, image_files: list[str]) -> None:
    mtd_name = f"MTD_MSI{spec.level}.xml"
    (root / mtd_name).write_text(_product_xml(spec, image_files), encoding="utf-8")
    granule = root / "GRANULE" / spec.granule
    (granule / "MTD_TL.xml").write_text(_tile_xml(spec), encoding="utf-8")
    (granule / "QI_DATA").mkdir(exist_ok=True)
    (granule / "AUX_DATA").mkdir(exist_ok=True)
    ds = root / "DATASTRIP" / spec.datastrip
    ds.mkdir(parents=True)
    (ds / "MTD_DS.xml").write_text(
        f'<?xml version="1.0" encoding="UTF-8"?>\n<n1:Level-{spec.level[1:]}_DataStrip_ID '
        f'xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/S2_PDI_Level-{spec.level[1:]}_Datastrip_Metadata.xsd">'
        f"<n1:General_Info><DATASTRIP_ID>{spec.datastrip}</DATASTRIP_ID></n1:General_Info>"
        f"</n1:Level-{spec.level[1:]}_DataStrip_ID>\n",
        encoding="utf-8",
    )
    for folder in ("AUX_DATA", "HTML", "rep_info"):
        (root / folder).mkdir(exist_ok=True)
    (root / "INSPIRE.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<gmd:MD_Metadata xmlns:gmd="http://www.isotc211.org/2005/gmd">'
        f"<gmd:fileIdentifier>{spec.product_id}</gmd:fileIdentifier></gmd:MD_Metadata>\n",
        encoding="utf-8",
    )
    (root / "manifest.safe").write_text(_manifest_xml(root, spec), encoding="utf-8")


def _product_xml(spec: _ProductSpec, image_files: list[str]) -> str:
    lvl = spec.level[1:]  # "1C" / "2A"
    images = "\n".join(f"              <IMAGE_FILE>{escape(f)}</IMAGE_FILE>" for f in image_files)
    offsets_tag, list_tag = (
        ("RADIO_ADD_OFFSET", "Radiometric_Offset_List")
        if lvl == "1C"
        else ("BOA_ADD_OFFSET", "BOA_ADD_OFFSET_VALUES_LIST")
    )
    offsets = ""
    if spec.offset:
        rows = "\n".join(
            f'        <{offsets_tag} band_id="{i}">{spec.offset}</{offsets_tag}>' for i in range(13)
        )
        offsets = f"      <{list_tag}>\n{rows}\n      </{list_tag}>\n"
    if lvl == "1C":
        quant = f'      <QUANTIFICATION_VALUE unit="none">{spec.quantification}</QUANTIFICATION_VALUE>\n'
    else:
        quant = (
            "      <QUANTIFICATION_VALUES_LIST>\n"
            f'        <BOA_QUANTIFICATION_VALUE unit="none">{spec.quantification}</BOA_QUANTIFICATION_VALUE>\n'
            '        <AOT_QUANTIFICATION_VALUE unit="none">1000.0</AOT_QUANTIFICATION_VALUE>\n'
            '        <WVP_QUANTIFICATION_VALUE unit="cm">1000.0</WVP_QUANTIFICATION_VALUE>\n'
            "      </QUANTIFICATION_VALUES_LIST>\n"
        )
    spectral = "\n".join(
        f'        <Spectral_Information bandId="{i}" physicalBand="{_physical(b)}">\n'
        f"          <RESOLUTION>{BANDS[b].resolution}</RESOLUTION>\n"
        f'          <Wavelength><CENTRAL unit="nm">{BANDS[b].wavelength_nm}</CENTRAL></Wavelength>\n'
        "        </Spectral_Information>"
        for i, b in enumerate(BAND_NAMES)
    )
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<n1:Level-{lvl}_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-{lvl}.xsd" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <n1:General_Info>
    <Product_Info>
      <PRODUCT_START_TIME>{spec.iso}</PRODUCT_START_TIME>
      <PRODUCT_STOP_TIME>{spec.iso}</PRODUCT_STOP_TIME>
      <PRODUCT_URI>{spec.product_id}.SAFE</PRODUCT_URI>
      <PROCESSING_LEVEL>Level-{lvl}</PROCESSING_LEVEL>
      <PRODUCT_TYPE>S2MSI{lvl}</PRODUCT_TYPE>
      <PROCESSING_BASELINE>{spec.baseline}</PROCESSING_BASELINE>
      <GENERATION_TIME>{spec.iso}</GENERATION_TIME>
      <PREVIEW_IMAGE_URL>Not applicable</PREVIEW_IMAGE_URL>
      <PREVIEW_GEO_INFO>Not applicable</PREVIEW_GEO_INFO>
      <Datatake datatakeIdentifier="GS2B_{spec.stamp}_012345_N{spec.baseline}">
        <SPACECRAFT_NAME>Sentinel-2B</SPACECRAFT_NAME>
        <DATATAKE_TYPE>INS-NOBS</DATATAKE_TYPE>
        <DATATAKE_SENSING_START>{spec.iso}</DATATAKE_SENSING_START>
        <SENSING_ORBIT_NUMBER>22</SENSING_ORBIT_NUMBER>
        <SENSING_ORBIT_DIRECTION>DESCENDING</SENSING_ORBIT_DIRECTION>
      </Datatake>
      <Query_Options completeSingleTile="true">
        <PRODUCT_FORMAT>SAFE_COMPACT</PRODUCT_FORMAT>
      </Query_Options>
      <Product_Organisation>
        <Granule_List>
          <Granule datastripIdentifier="S2B_OPER_MSI_L{lvl}_{spec.datastrip}_N{spec.baseline}" granuleIdentifier="S2B_OPER_MSI_L{lvl}_TL_{spec.granule}_N{spec.baseline}" imageFormat="JPEG2000">
{images}
          </Granule>
        </Granule_List>
      </Product_Organisation>
    </Product_Info>
    <Product_Image_Characteristics>
      <Special_Values>
        <SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT>
        <SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX>
      </Special_Values>
      <Special_Values>
        <SPECIAL_VALUE_TEXT>SATURATED</SPECIAL_VALUE_TEXT>
        <SPECIAL_VALUE_INDEX>65535</SPECIAL_VALUE_INDEX>
      </Special_Values>
      <Image_Display_Order>
        <RED_CHANNEL>3</RED_CHANNEL>
        <GREEN_CHANNEL>2</GREEN_CHANNEL>
        <BLUE_CHANNEL>1</BLUE_CHANNEL>
      </Image_Display_Order>
{quant}{offsets}      <Spectral_Information_List>
{spectral}
      </Spectral_Information_List>
    </Product_Image_Characteristics>
  </n1:General_Info>
  <n1:Geometric_Info>
    <Coordinate_Reference_System>
      <GEO_TABLES version="1">EPSG</GEO_TABLES>
      <HORIZONTAL_CS_TYPE>GEOGRAPHIC</HORIZONTAL_CS_TYPE>
    </Coordinate_Reference_System>
  </n1:Geometric_Info>
  <n1:Auxiliary_Data_Info/>
  <n1:Quality_Indicators_Info>
    <Cloud_Coverage_Assessment>0.0</Cloud_Coverage_Assessment>
  </n1:Quality_Indicators_Info>
</n1:Level-{lvl}_User_Product>
"""


def _physical(band: str) -> str:
    return band if band == "B8A" else f"B{int(band[1:])}"


def _tile_xml(spec: _ProductSpec) -> str:
    lvl = spec.level[1:]
    h, w = spec.shape
    sizes = "\n".join(
        f'      <Size resolution="{r}">\n        <NROWS>{h * 10 // r}</NROWS>\n        <NCOLS>{w * 10 // r}</NCOLS>\n'
        "      </Size>"
        for r in (10, 20, 60)
    )
    geopos = "\n".join(
        f'      <Geoposition resolution="{r}">\n        <ULX>{spec.transform.c:g}</ULX>\n'
        f"        <ULY>{spec.transform.f:g}</ULY>\n        <XDIM>{r}</XDIM>\n        <YDIM>-{r}</YDIM>\n"
        "      </Geoposition>"
        for r in (10, 20, 60)
    )
    epsg = spec.crs.to_epsg()
    code = f"EPSG:{epsg}" if epsg else spec.crs.to_string()
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<n1:Level-{lvl}_Tile_ID xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/S2_PDI_Level-{lvl}_Tile_Metadata.xsd">
  <n1:General_Info>
    <TILE_ID metadataLevel="Brief">S2B_OPER_MSI_L{lvl}_TL_{spec.granule}_N{spec.baseline}</TILE_ID>
    <DATASTRIP_ID metadataLevel="Standard">S2B_OPER_MSI_L{lvl}_{spec.datastrip}_N{spec.baseline}</DATASTRIP_ID>
    <DOWNLINK_PRIORITY metadataLevel="Standard">NOMINAL</DOWNLINK_PRIORITY>
    <SENSING_TIME metadataLevel="Standard">{spec.iso}</SENSING_TIME>
  </n1:General_Info>
  <n1:Geometric_Info>
    <Tile_Geocoding metadataLevel="Brief">
      <HORIZONTAL_CS_NAME>{escape(spec.crs.to_wkt().split('"')[1] if '"' in spec.crs.to_wkt() else code)}</HORIZONTAL_CS_NAME>
      <HORIZONTAL_CS_CODE>{code}</HORIZONTAL_CS_CODE>
{sizes}
{geopos}
    </Tile_Geocoding>
  </n1:Geometric_Info>
  <n1:Quality_Indicators_Info metadataLevel="Standard">
    <Image_Content_QI>
      <NODATA_PIXEL_PERCENTAGE>0.0</NODATA_PIXEL_PERCENTAGE>
    </Image_Content_QI>
  </n1:Quality_Indicators_Info>
</n1:Level-{lvl}_Tile_ID>
"""


def _manifest_xml(root: Path, spec: _ProductSpec) -> str:
    objects = []
    for i, path in enumerate(sorted(p for p in root.rglob("*") if p.is_file())):
        rel = path.relative_to(root).as_posix()
        objects.append(
            f'    <dataObject ID="obj_{i}">\n      <byteStream mimeType="application/octet-stream" '
            f'size="{path.stat().st_size}">\n        <fileLocation locatorType="URL" href="./{escape(rel)}"/>\n'
            "      </byteStream>\n    </dataObject>"
        )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<xfdu:XFDU xmlns:xfdu="urn:ccsds:schema:xfdu:1" xmlns:safe="http://www.esa.int/safe/sentinel/1.1" version="esa/safe/sentinel/1.1/sentinel-2/msi/archive_l{spec.level[1:].lower()}_user_product">
  <informationPackageMap>
    <xfdu:contentUnit unitType="Product_Level-{spec.level[1:]}" textInfo="SENTINEL-2 MSI Level-{spec.level[1:]} User Product">
      <metadataPointer dmdID="S2_Level-{spec.level[1:]}_Product_Metadata"/>
    </xfdu:contentUnit>
  </informationPackageMap>
  <metadataSection>
    <metadataObject ID="S2_Level-{spec.level[1:]}_Product_Metadata" classification="DESCRIPTION" category="DMD">
      <dataObjectPointer dataObjectID="obj_mtd"/>
    </metadataObject>
  </metadataSection>
  <dataObjectSection>
{chr(10).join(objects)}
  </dataObjectSection>
</xfdu:XFDU>
"""


def write_geotiff(
    path: str | os.PathLike[str],
    reflectance: np.ndarray,
    bands: tuple[str, ...] | list[str],
    crs: str,
    transform: Affine,
    *,
    nodata_mask: np.ndarray | None = None,
    scale: float = 1e-4,
    descriptions: bool = True,
    blocksize: int = 256,
    overwrite: bool = False,
) -> Path:
    """Write ``reflectance`` ``(bands, H, W)`` as a tiled, deflated uint16 GeoTIFF: ``DN = reflectance / scale``.

    DN 0 is nodata (where ``nodata_mask`` or NaN); band descriptions carry the ESA names
    unless ``descriptions`` is false.  Written to a temp file beside ``path``, then renamed.
    """
    path = Path(path)
    names = tuple(canonical_band(b) for b in bands)
    refl = np.asarray(reflectance, dtype=np.float64)
    if refl.ndim != 3 or refl.shape[0] != len(names):
        raise InvalidParameterError(f"reflectance has shape {refl.shape}; expected ({len(names)}, H, W).")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; pass overwrite=True or choose another path.")
    missing = None if nodata_mask is None else np.broadcast_to(np.asarray(nodata_mask, bool), refl.shape)
    dn = reflectance_to_dn(refl, quantification=1.0 / scale, nodata=missing)
    _, h, w = dn.shape
    tiled = h >= blocksize and w >= blocksize
    profile = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": len(names),
        "dtype": "uint16",
        "crs": CRS.from_user_input(crs),
        "transform": transform,
        "nodata": 0,
        "compress": "deflate",
        "interleave": "pixel",
        "tiled": tiled,
    }
    if tiled:
        profile.update(blockxsize=blocksize, blockysize=blocksize)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp.tif")
    try:
        with rasterio.open(tmp, "w", **profile) as ds:
            ds.write(dn)
            if descriptions:
                for i, name in enumerate(names, start=1):
                    ds.set_band_description(i, name)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
