"""Benchmark: composite N full-size synthetic Sentinel-2 scenes and stream the result into a COG.

Every scene is lazy: each dask block computes its reflectance and its mask as deterministic
functions of the global pixel coordinates and the scene number (a smooth "surface", cloud blobs
that move from scene to scene, shadows beside them), so generating a block stands in for reading
and decoding it.  Nothing is ever the size of a scene; the point is that peak memory follows the
block size x scenes x bands, not the scene size.

    python benchmarks/composite_bench.py --scenes 6 --size 10980           # full tiles
    python benchmarks/composite_bench.py --scenes 3 --size 2048 --check    # quick, verified
    python benchmarks/composite_bench.py --method percentile --percentile 25 --size 4096 --check
    python benchmarks/composite_bench.py --method first --max-observations 1 --size 4096 --check

Prints one JSON line: wall time, peak RSS (``getrusage`` maximum and a 0.2 s sampler), sizes.
``--check`` re-reads the written COG and compares it with the known clear surface.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import threading
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr

from s2mask.bands import resolve_bands
from s2mask.composite import composite, write_composite

CLOUD, SHADOW = 0.8, 0.3
"""Cloud pixels read 0.8 in every band; shadow pixels 0.3 x the surface."""


def surface(b: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """The clear reflectance of band ``b`` at global pixel rows ``yy`` / columns ``xx`` (float32)."""
    v = 0.2 + 0.1 * np.sin(yy / 97.0 + b) * np.cos(xx / 131.0 - b) + 0.002 * b
    return v.astype(np.float32)


def scene_mask(t: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """uint8 mask of scene ``t``: cloud blobs (1) that differ per scene, shadow (2) just beside them."""
    fy, fx = 211.0 + 37.0 * t, 173.0 + 29.0 * t  # a different pattern per scene
    blob = np.sin(yy / fy + 1.7 * t) * np.cos(xx / fx - 0.9 * t)
    shade = np.sin((yy - 40) / fy + 1.7 * t) * np.cos((xx - 60) / fx - 0.9 * t)
    mask = np.zeros(blob.shape, np.uint8)
    mask[shade > 0.2] = 2  # about 40 % cloud or shadow per scene; ~0.1 % of pixels never clear in 6
    mask[blob > 0.2] = 1
    return mask


def _grid(block_info: dict) -> tuple[np.ndarray, np.ndarray]:
    (y0, y1), (x0, x1) = block_info[None]["array-location"][-2:]
    return np.meshgrid(
        np.arange(y0, y1, dtype=np.float32), np.arange(x0, x1, dtype=np.float32), indexing="ij"
    )


def _scene_block(t: int, nbands: int, block_info: dict | None = None) -> np.ndarray:
    yy, xx = _grid(block_info)
    mask = scene_mask(t, yy, xx)
    out = np.empty((nbands, *yy.shape), np.float32)
    for b in range(nbands):
        v = surface(b, yy, xx)
        v[mask == 1] = CLOUD
        v[mask == 2] *= SHADOW
        out[b] = v
    return out


def _mask_block(t: int, block_info: dict | None = None) -> np.ndarray:
    return scene_mask(t, *_grid(block_info))


def synthetic_scene(
    t: int, *, size: int, bands: tuple[str, ...], chunks: int
) -> tuple[xr.DataArray, xr.DataArray]:
    """Lazy scene ``t`` (``("band", "y", "x")`` float32) and its mask on a 10 m UTM tile grid."""
    y = 5_000_040.0 - 10.0 * (np.arange(size) + 0.5)
    x = 399_960.0 + 10.0 * (np.arange(size) + 0.5)
    cube = da.map_blocks(
        _scene_block, t, len(bands), chunks=((len(bands),), *da.core.normalize_chunks(chunks, (size, size))),
        dtype=np.float32, meta=np.empty((0, 0, 0), np.float32), name=f"scene-{t}-{size}",
    )  # fmt: skip
    mask = da.map_blocks(
        _mask_block, t, chunks=da.core.normalize_chunks(chunks, (size, size)), dtype=np.uint8,
        meta=np.empty((0, 0), np.uint8), name=f"mask-{t}-{size}",
    )  # fmt: skip
    coords = {"y": y, "x": x}
    scene = xr.DataArray(cube, dims=("band", "y", "x"), coords={"band": list(bands), **coords})
    scene.attrs.update(product_id=f"SYNTHETIC_{t}", datetime=f"2024-06-{1 + 5 * t % 28:02d}T10:00:00")
    m = xr.DataArray(mask, dims=("y", "x"), coords=coords)
    return scene.rio.write_crs("EPSG:32633"), m.rio.write_crs("EPSG:32633")


class PeakRSS:
    """Samples this process's resident set size every ``interval`` seconds in a thread."""

    def __init__(self, interval: float = 0.2) -> None:
        import psutil

        self._proc, self._interval, self.peak = psutil.Process(), interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(self._interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _gdal_cachemax() -> int:
    """GDAL's raster block cache size (default 5 % of RAM), which the COG writer fills."""
    import rasterio.env

    with rasterio.Env():
        return int(rasterio.env.get_gdal_config("GDAL_CACHEMAX"))


def check(
    path: Path, *, scenes: int, bands: tuple[str, ...], size: int, samples: int = 4096,
    min_observations: int = 1, max_observations: int | None = None,
) -> dict:  # fmt: skip
    """Compare random pixels of the written COG with the known surface and clear count (every method
    returns the surface exactly: the clear observations of a pixel are all equal)."""
    import rasterio

    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, size, samples), rng.integers(0, size, samples)
    yy, xx = rows.astype(np.float32), cols.astype(np.float32)
    counts = sum((scene_mask(t, yy, xx) == 0).astype(int) for t in range(scenes))
    if max_observations is not None:
        counts = np.minimum(counts, max_observations)
    with rasterio.open(path) as src:
        values = np.array(
            [src.read(window=((r, r + 1), (c, c + 1)))[:, 0, 0] for r, c in zip(rows, cols, strict=True)]
        ).T
    ok = counts >= max(1, min_observations)
    expected = np.stack([np.clip(np.round(surface(b, yy, xx) * 10000), 1, 65535) for b in range(len(bands))])
    return {
        "pixels_checked": samples,
        "reflectance_exact": bool(np.array_equal(values[: len(bands), ok], expected[:, ok])),
        "count_exact": bool(np.array_equal(values[len(bands)], counts)),
        "nodata_where_no_clear": bool((values[: len(bands), ~ok] == 0).all()),
        "pixels_without_clear": int((~ok).sum()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=6)
    ap.add_argument("--size", type=int, default=10980)
    ap.add_argument("--bands", default="rgbn", help="preset or comma list (default rgbn: 4 bands)")
    ap.add_argument("--method", default="median")
    ap.add_argument("--percentile", type=float, default=None, help="q of --method percentile")
    ap.add_argument("--order", default=None, help="scene order (input, oldest, newest, ...)")
    ap.add_argument("--min-observations", type=int, default=1)
    ap.add_argument("--max-observations", type=int, default=None)
    ap.add_argument("--buffer", type=int, default=0)
    ap.add_argument("--chunks", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=None, help="dask threads (default: CPUs available)")
    ap.add_argument("--out", type=Path, default=None, help="output COG (default: a temp file, removed)")
    ap.add_argument("--check", action="store_true", help="verify sampled pixels against the known surface")
    args = ap.parse_args()

    bands = resolve_bands(args.bands)
    threads = args.threads or len(os.sched_getaffinity(0))
    tmpdir = None
    out = args.out
    if out is None:
        tmpdir = tempfile.TemporaryDirectory(prefix="s2mask-bench-")
        out = Path(tmpdir.name) / "composite.tif"
    pairs = [synthetic_scene(t, size=args.size, bands=bands, chunks=args.chunks) for t in range(args.scenes)]
    cubes, masks = [p[0] for p in pairs], [p[1] for p in pairs]

    import psutil

    baseline = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    with PeakRSS() as rss, dask.config.set(scheduler="threads", num_workers=threads):
        result = composite(
            cubes, masks, method=args.method, percentile=args.percentile, buffer=args.buffer, order=args.order,
            min_observations=args.min_observations, max_observations=args.max_observations, chunks=args.chunks,
        )  # fmt: skip
        write_composite(result, out, overwrite=True)
    wall = time.perf_counter() - t0
    report = {
        "scenes": args.scenes,
        "size": args.size,
        "bands": list(bands),
        "method": args.method,
        "percentile": args.percentile,
        "order": args.order,
        "min_observations": args.min_observations,
        "max_observations": args.max_observations,
        "buffer": args.buffer,
        "chunks": args.chunks,
        "threads": threads,
        "wall_seconds": round(wall, 1),
        "megapixels_per_second_per_scene": round(args.scenes * args.size**2 / wall / 1e6, 2),
        "rss_before_mib": round(baseline / 2**20),
        "peak_rss_mib_sampled": round(rss.peak / 2**20),
        "peak_rss_mib_getrusage": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "gdal_cachemax_bytes": int(_gdal_cachemax()),
        "one_scene_in_memory_mib": round(len(bands) * args.size**2 * 4 / 2**20),
        "output_mib": round(out.stat().st_size / 2**20, 1),
    }
    if args.check:
        report["check"] = check(
            out, scenes=args.scenes, bands=bands, size=args.size,
            min_observations=args.min_observations, max_observations=args.max_observations,
        )  # fmt: skip
    print(json.dumps(report))
    if tmpdir is not None:
        tmpdir.cleanup()


if __name__ == "__main__":
    main()
