"""Generate a full-size (or quarter/half-size) Sentinel-2 product from real spectra, for benchmarks.

The s2cloudless 1.2.1 test scene (``../shared/data/s2cloudless_testscene/input_arrays.npz``,
key ``s2_im``: a real 856 x 512 px, 13-band L1C river delta with cumulus and shadows) is
tiled by mirroring (``np.pad(mode="symmetric")``, so there are no seams) up to
``--size`` x ``--size`` px at 10 m, then written as

* ``safe``: an L1C SAFE product with lossless JPEG 2000 band files at native resolution
  (:func:`s2mask.testing.products.write_safe`; ``--size`` is rounded up to a multiple of 6,
  e.g. 2745 -> 2748, because the 20 m and 60 m grids must tile the 10 m grid);
* ``cog``: a 13-band uint16 Cloud Optimized GeoTIFF at 10 m (band descriptions B01..B12,
  DN = reflectance * 10000, deflate, 512 px tiles, no overviews), written window by window.

The full cube is built band by band in a scratch ``np.memmap`` so RAM stays small
(13 x 10980^2 float32 is 6.3 GB). The content repeats every 1712 x 1024 px: fine for
speed and memory, not for accuracy. JP2 encoding of a full tile takes several minutes;
run it in the background::

    nohup python benchmarks/make_full_tile.py --size 10980 --out /tmp/s2mask-bench > gen.log 2>&1 &
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.crs import CRS
from rasterio.windows import Window

from s2mask.bands import BAND_NAMES
from s2mask.testing.products import DEFAULT_TRANSFORM, reflectance_to_dn, write_safe

SCENE = (
    Path(__file__).resolve().parents[1]
    / ".."
    / "shared"
    / "data"
    / "s2cloudless_testscene"
    / "input_arrays.npz"
)
CRS_UTM = "EPSG:32631"


def product_paths(out: Path, size: int) -> dict[str, Path]:
    """Where :func:`main` writes the products of one size (stable names other scripts rely on)."""
    return {
        "safe": out / f"S2B_MSIL1C_20200101T101031_N0509_R022_T31PDR_{size}_20200101T101031.SAFE",
        "cog": out / f"s2_l1c_{size}.tif",
    }


def load_scene(npz: Path) -> np.ndarray:
    """The real scene as ``(13, 856, 512)`` float32 top-of-atmosphere reflectance."""
    with np.load(npz) as data:
        return np.ascontiguousarray(data["s2_im"][0].transpose(2, 0, 1).astype(np.float32))


def mirrored_cube(scene: np.ndarray, size: int, scratch: Path) -> np.memmap:
    """``(13, size, size)`` float32 memmap: ``scene`` tiled by mirroring, built one band at a time."""
    cube = np.lib.format.open_memmap(scratch, mode="w+", dtype=np.float32, shape=(scene.shape[0], size, size))
    h, w = scene.shape[1:]
    for b in range(scene.shape[0]):
        cube[b] = np.pad(scene[b], ((0, size - h), (0, size - w)), mode="symmetric")
    cube.flush()
    return cube


def write_cog(path: Path, cube: np.ndarray, *, block: int = 512) -> Path:
    """Stream ``cube`` (13, H, W) into a tiled GeoTIFF, then copy it to a COG (GDAL COG driver)."""
    _, h, w = cube.shape
    profile = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": cube.shape[0],
        "dtype": "uint16",
        "crs": CRS.from_user_input(CRS_UTM),
        "transform": DEFAULT_TRANSFORM,
        "nodata": 0,
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
        "compress": "deflate",
        "interleave": "pixel",
        "BIGTIFF": "YES",
    }
    staged = path.with_name(f".{path.name}.staged.tif")
    with rasterio.open(staged, "w", **profile) as ds:
        for i, name in enumerate(BAND_NAMES, start=1):
            ds.set_band_description(i, name)
        for y in range(0, h, block * 4):
            rows = min(block * 4, h - y)
            dn = reflectance_to_dn(cube[:, y : y + rows, :], quantification=10000)
            ds.write(dn, window=Window(0, y, w, rows))
    tmp = path.with_name(f".{path.name}.tmp.tif")
    rasterio.shutil.copy(
        staged,
        tmp,
        driver="COG",
        COMPRESS="DEFLATE",
        PREDICTOR="2",
        BLOCKSIZE=str(block),
        OVERVIEWS="NONE",
        BIGTIFF="YES",
        NUM_THREADS="2",
    )
    staged.unlink()
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=10980, help="scene side in 10 m px (10980 = a full tile)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/s2mask-bench"), help="output folder")
    parser.add_argument("--formats", default="safe,cog", help="comma list of safe, cog")
    parser.add_argument("--npz", type=Path, default=SCENE, help="the s2cloudless test scene (.npz)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    paths = product_paths(args.out, args.size)
    todo = [f for f in formats if args.overwrite or not paths[f].exists()]
    if not todo:
        print("\n".join(str(paths[f]) for f in formats))
        return 0

    scene = load_scene(args.npz)
    safe_size = -(-args.size // 6) * 6  # the SAFE grid needs multiples of 6 px
    scratch = args.out / f".cube_{safe_size}.npy"
    t0 = time.perf_counter()
    cube = mirrored_cube(scene, safe_size, scratch)
    print(f"cube {cube.shape} built in {time.perf_counter() - t0:.1f} s", flush=True)
    try:
        if "cog" in todo:
            t0 = time.perf_counter()
            view = cube[:, : args.size, : args.size]
            write_cog(paths["cog"], view)
            print(f"cog  {paths['cog']} in {time.perf_counter() - t0:.1f} s", flush=True)
        if "safe" in todo:
            t0 = time.perf_counter()
            target = paths["safe"]
            if target.exists():
                shutil.rmtree(target)
            write_safe(
                args.out,
                cube,
                level="L1C",
                baseline="05.09",
                crs=CRS_UTM,
                transform=DEFAULT_TRANSFORM,
                product_id=target.name.removesuffix(".SAFE"),
            )
            print(f"safe {target} ({safe_size} px) in {time.perf_counter() - t0:.1f} s", flush=True)
    finally:
        del cube
        scratch.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
