"""Read what GDAL itself reports about a raster band (category names, attribute table).

rasterio has no API for category names or raster attribute tables, so this asks the GDAL
library rasterio ships with, through ``ctypes``: what ``gdalinfo`` and QGIS would see.
"""

from __future__ import annotations

import ctypes
import glob
import os
from pathlib import Path

import rasterio


def _libgdal() -> ctypes.CDLL:
    here = Path(rasterio.__file__).parent
    found = sorted(glob.glob(str(here.parent / "rasterio.libs" / "libgdal*.so*")))
    lib = ctypes.CDLL(found[0] if found else "libgdal.so", mode=ctypes.RTLD_GLOBAL)
    lib.GDALOpen.restype = ctypes.c_void_p
    lib.GDALOpen.argtypes = [ctypes.c_char_p, ctypes.c_int]
    lib.GDALClose.argtypes = [ctypes.c_void_p]
    lib.GDALGetRasterBand.restype = ctypes.c_void_p
    lib.GDALGetRasterBand.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.GDALGetRasterCategoryNames.restype = ctypes.POINTER(ctypes.c_char_p)
    lib.GDALGetRasterCategoryNames.argtypes = [ctypes.c_void_p]
    lib.GDALGetDescription.restype = ctypes.c_char_p
    lib.GDALGetDescription.argtypes = [ctypes.c_void_p]
    lib.GDALGetDefaultRAT.restype = ctypes.c_void_p
    lib.GDALGetDefaultRAT.argtypes = [ctypes.c_void_p]
    for name, res in (("GDALRATGetRowCount", ctypes.c_int), ("GDALRATGetColumnCount", ctypes.c_int)):
        getattr(lib, name).restype = res
        getattr(lib, name).argtypes = [ctypes.c_void_p]
    lib.GDALRATGetNameOfCol.restype = ctypes.c_char_p
    lib.GDALRATGetNameOfCol.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.GDALRATGetUsageOfCol.restype = ctypes.c_int
    lib.GDALRATGetUsageOfCol.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.GDALRATGetValueAsString.restype = ctypes.c_char_p
    lib.GDALRATGetValueAsString.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    lib.GDALAllRegister()
    return lib


def band_classes(path: str | os.PathLike[str]) -> dict:
    """``{"description", "categories": [...], "rat": [{column: value}], "usages": {column: usage}}`` of band 1."""
    lib = _libgdal()
    ds = lib.GDALOpen(str(path).encode(), 0)
    assert ds, f"GDAL cannot open {path}"
    try:
        band = lib.GDALGetRasterBand(ds, 1)
        description = (lib.GDALGetDescription(band) or b"").decode()
        names = lib.GDALGetRasterCategoryNames(band)
        categories = []
        i = 0
        while names and names[i] is not None:
            categories.append(names[i].decode())
            i += 1
        rows, usages = [], {}
        rat = lib.GDALGetDefaultRAT(band)
        if rat:
            cols = [lib.GDALRATGetNameOfCol(rat, c).decode() for c in range(lib.GDALRATGetColumnCount(rat))]
            usages = {name: lib.GDALRATGetUsageOfCol(rat, c) for c, name in enumerate(cols)}
            for r in range(lib.GDALRATGetRowCount(rat)):
                rows.append(
                    {name: lib.GDALRATGetValueAsString(rat, r, c).decode() for c, name in enumerate(cols)}
                )
        return {"description": description, "categories": categories, "rat": rows, "usages": usages}
    finally:
        lib.GDALClose(ds)
