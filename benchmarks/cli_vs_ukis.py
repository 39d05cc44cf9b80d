"""`s2mask run` on a GeoTIFF as a user runs it (start-up included) against ukis-csmask, in one run.

    python benchmarks/cli_vs_ukis.py --size 2048 --out /tmp/s2mask-cli --precision fp32,bf16

Builds (once) a ``size`` x ``size`` 13-band L1C COG from the real s2cloudless scene tiled by
mirroring (``make_full_tile``), then, alternating so that load drifts hit both equally:

* ``s2mask run scene.tif -o mask.tif --overwrite --quiet --precision P`` in a fresh process
  (wall clock from process start to exit: imports, model load, reading, inference, COG, summary,
  quick-look);
* ukis-csmask (as installed; 6-band L1C model, onnxruntime's default threads) on the same pixels
  already in memory (``CSmask(img, ...)``, the peer's own tiling and blending), in a fresh process.

Prints one JSON line per run and the ratios of the medians (s2mask Mpx/s over ukis-csmask Mpx/s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

UKIS = """
import sys, time, numpy as np, rasterio, warnings
warnings.simplefilter("ignore")
from ukis_csmask.mask import CSmask
with rasterio.open(sys.argv[1]) as src:
    names = list(src.descriptions)
    img = np.stack([src.read(names.index(b) + 1) for b in ("B02","B03","B04","B08","B11","B12")], -1)
img = (img.astype(np.float32) / 10000.0)
t0 = time.perf_counter()
csm = CSmask(img, band_order=["blue","green","red","nir","swir16","swir22"], product_level="l1c")
print(time.perf_counter() - t0, float((csm.csm == 1).mean()))
"""


def build(size: int, out: Path) -> Path:
    from make_full_tile import SCENE, load_scene, mirrored_cube, write_cog

    path = out / f"s2_l1c_{size}.tif"
    if not path.exists():
        out.mkdir(parents=True, exist_ok=True)
        cube = mirrored_cube(load_scene(SCENE), size, out / "scratch.npy")
        write_cog(path, cube)
        (out / "scratch.npy").unlink()
    return path


def run_s2mask(tif: Path, out: Path, precision: str, threads: int | None) -> dict:
    cmd = ["s2mask", "run", str(tif), "-o", str(out / "mask.tif"), "--overwrite", "--quiet"]
    cmd += ["--precision", precision] + (["--threads", str(threads)] if threads else [])
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return {"tool": f"s2mask run ({precision})", "seconds": time.perf_counter() - t0}


def run_ukis(tif: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", UKIS, str(tif)], check=True, capture_output=True, text=True)
    secs, cloud = (float(v) for v in r.stdout.split())
    return {"tool": "ukis-csmask 6b-L1C (pixels in memory)", "seconds": secs, "cloud": cloud}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--out", type=Path, default=Path("/tmp/s2mask-cli"))
    p.add_argument("--precision", default="fp32,bf16", help="comma list of s2mask --precision values")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="s2mask --threads (default: all)")
    args = p.parse_args(argv)
    tif = build(args.size, args.out)
    mpx = args.size * args.size / 1e6
    results: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        rows = [run_ukis(tif)] + [run_s2mask(tif, args.out, pr, args.threads) for pr in args.precision.split(",")]
        for r in rows:
            r["mpx_per_s"] = round(mpx / r["seconds"], 3)
            r["load1"] = round(os.getloadavg()[0], 2)
            print(json.dumps(r), flush=True)
            results.setdefault(r["tool"], []).append(r["seconds"])
    med = {k: statistics.median(v) for k, v in results.items()}
    peer = next(v for k, v in med.items() if k.startswith("ukis"))
    summary = {k: {"median_s": round(v, 2), "mpx_per_s": round(mpx / v, 3), "ratio": round(peer / v, 2)}
               for k, v in med.items()}  # fmt: skip
    print(json.dumps({"size": args.size, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
