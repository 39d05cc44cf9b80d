"""Benchmark: a full Sentinel-2 tile to a 10 m cloud/shadow mask COG, with the breakdown and the peers.

Run ``benchmarks/make_full_tile.py`` first (it writes the products this script finds by size)::

    python benchmarks/full_tile_bench.py --size 10980                       # SAFE (JP2), everything
    python benchmarks/full_tile_bench.py --size 10980 --format cog --stages read,full,write

Stages, each in a fresh subprocess so its peak RSS is its own (psutil sampler over the
process tree every 50 ms, plus ``getrusage``):

* ``read``  open the product and read/decode every block of the 9-band cube, in the engine's
  order (strip by strip), into a no-op;
* ``infer`` the engine's numpy core (``predict_array``: windows, batches, model, blending) on
  an in-memory region of the scene, projected to the whole scene by its window count;
* ``full``  the pipeline ``s2mask.run.run_product`` (open -> predict -> to_mask -> write_cog;
  no quick-look or summary), i.e. ``s2mask run`` without its extras;
* ``write`` ``write_cog`` of the finished mask, held in memory (the write share of ``full``);
* ``crop``  s2mask (predict + to_mask, in memory) on a ``--crop`` px top-left crop of the same
  scene, beside ``ukis`` (ukis-csmask 6-band L1C model, onnxruntime CPU) and ``s2cloudless``
  (10 bands, LightGBM, default detector settings) on the very same in-memory crop; those two run
  with ``--peer-python`` (the benchmark venv).  Peers get reflectance arrays: their reading time
  is not counted, so the crop comparison is inference against inference.

``--infer-res 20`` runs inference on the 20 m grid and upsamples the mask to 10 m (a lever).
Without ``--weights`` the shipped ``s2-9`` model is used, or, if none ships yet, an untrained
width-16 9-band U-Net (speed does not depend on the weights).  Prints a table and writes
``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_full_tile import product_paths  # noqa: E402
from peak_rss import GIB, PeakRSS, cpu_seconds, rusage_max_bytes  # noqa: E402

PEER_PYTHON = sys.executable  # ukis-csmask and s2cloudless as installed beside s2mask (make install)
UKIS_BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
UKIS_NAMES = ["blue", "green", "red", "nir", "swir16", "swir22"]
S2CLOUDLESS_BANDS = ("B01", "B02", "B04", "B05", "B08", "B8A", "B09", "B10", "B11", "B12")


# --------------------------------------------------------------------------- helpers


def default_weights(out: Path, width: int = 16) -> str:
    """The shipped ``s2-9`` model, else an untrained 9-band U-Net of ``width`` saved in ``out``."""
    from s2mask.model import ModelCard, build_model, save_model, shipped_models

    if width == 16 and "s2-9" in shipped_models():
        return "s2-9"
    from s2mask.bands import DEFAULT_BANDS

    path = out / f"untrained_s2-9_w{width}.safetensors"
    if not path.exists():
        card = ModelCard(
            name=f"s2-9-untrained-w{width}",
            bands=DEFAULT_BANDS,
            width=width,
            training_data="none (random weights: speed benchmarks only)",
        )
        save_model(build_model(card), card, path)
    return str(path)


def _load(args: argparse.Namespace):  # noqa: ANN202
    from s2mask.model import load_model
    from s2mask.model.device import cpu_count

    return load_model(
        args.weights, device=args.device, runtime=args.runtime, precision=args.precision,
        threads=args.threads or cpu_count(),
    )


# --------------------------------------------------------------------------- stages (run in a child)


def stage_read(args: argparse.Namespace) -> dict:
    """Every block of the 9-band cube read and dropped, in the engine's order (strip by strip, row by
    row, on the local threads): what decoding costs the pipeline. Letting dask order the reads instead
    evicts 20 m JPEG 2000 tiles before their second use and costs about 25 % more CPU."""
    from s2mask.bands import DEFAULT_BANDS
    from s2mask.engine.stream import stream_blocks
    from s2mask.io import open_product

    t0 = time.perf_counter()
    cube = open_product(args.product, bands=DEFAULT_BANDS, resolution=args.infer_res, chunks=args.chunks)
    for _ in stream_blocks(cube.data):
        pass
    return {"seconds": time.perf_counter() - t0, "pixels": args.size**2}


def infer_on_region(
    product: str | Path,
    model,  # noqa: ANN001
    *,
    chunks: int,
    batch_size: int,
    region: int,
    window: int | None = None,
    resolution: int | None = None,
    sync=lambda: None,  # noqa: ANN001 - waits for the device (CUDA) before a clock is read
) -> dict:
    """The engine's numpy core on an in-memory ``region``^2 of ``product``, scaled to the scene by window count."""
    from s2mask.engine import count_windows, predict_array
    from s2mask.engine.windows import WindowGrid, resolve_window
    from s2mask.io import open_product

    cube = open_product(product, bands=model.bands, resolution=resolution, chunks=chunks)
    r = min(region, cube.sizes["y"], cube.sizes["x"])
    data = np.asarray(cube[:, :r, :r].values, dtype=np.float32)
    win, ovl = resolve_window(window, None, default_window=model.card.window_size)
    model.predict_proba(data[None, :, :win, :win])  # warm-up (allocator, kernels, oneDNN primitives)
    sync()
    t0 = time.perf_counter()
    predict_array(data, model, window=win, batch_size=batch_size)
    sync()
    dt = time.perf_counter() - t0
    n_region = len(WindowGrid(r, r, win, ovl))
    n_scene = count_windows(cube, model, window=win)
    return {
        "region_px": r,
        "region_seconds": dt,
        "windows_region": n_region,
        "windows_scene": n_scene,
        "seconds": dt * n_scene / n_region,
    }


def stage_infer(args: argparse.Namespace) -> dict:
    result = infer_on_region(
        args.product, _load(args), chunks=args.chunks, batch_size=args.batch_size, region=args.region,
        window=args.window, resolution=args.infer_res,
    )  # fmt: skip
    return {**result, "pixels": args.size**2}


def _pipeline_20m(args: argparse.Namespace, model, out: Path) -> None:  # noqa: ANN001
    """Inference on the 20 m grid, mask upsampled (nearest) to the 10 m grid, written as a COG."""
    import dask.array as da
    import xarray as xr

    from s2mask.engine import predict
    from s2mask.io import open_product
    from s2mask.mask import to_mask
    from s2mask.writers import write_mask

    fine = open_product(args.product, bands=model.bands[:1], resolution=10, chunks=args.chunks)
    cube = open_product(args.product, bands=model.bands, resolution=20, chunks=args.chunks // 2)
    mask = to_mask(predict(cube, model, batch_size=args.batch_size))
    up = da.repeat(da.repeat(mask.data, 2, axis=0), 2, axis=1)[: fine.sizes["y"], : fine.sizes["x"]]
    up = up.rechunk(args.chunks)
    out_mask = xr.DataArray(up, dims=("y", "x"), coords={"y": fine.y, "x": fine.x}, attrs=mask.attrs)
    out_mask = out_mask.rio.write_crs(fine.rio.crs).rio.write_nodata(255)
    write_mask(out_mask, out, overwrite=True, progress=False)  # as s2mask run writes it


def stage_full(args: argparse.Namespace) -> dict:
    from s2mask.run import RunOptions, run_product

    model = _load(args)
    t0 = time.perf_counter()
    if args.infer_res == 20:
        _pipeline_20m(args, model, args.mask_out)
    else:
        options = RunOptions(
            batch_size=args.batch_size,
            chunks=args.chunks,
            window=args.window,
            quicklook=False,
            summary=False,
            progress=False,
            overwrite=True,
        )
        run_product(args.product, args.mask_out, model=model, options=options)
    return {"seconds": time.perf_counter() - t0, "pixels": args.size**2, "mask": str(args.mask_out)}


def stage_write(args: argparse.Namespace) -> dict:
    import rioxarray

    from s2mask.writers import write_mask

    mask = rioxarray.open_rasterio(args.mask_out).squeeze("band", drop=True).load()
    mask = mask.chunk(args.chunks)
    out = args.mask_out.with_name(args.mask_out.stem + "_rewrite.tif")
    t0 = time.perf_counter()
    write_mask(mask, out, overwrite=True, progress=False)
    dt = time.perf_counter() - t0
    out.unlink()
    Path(f"{out}.aux.xml").unlink(missing_ok=True)
    return {"seconds": dt, "pixels": args.size**2}


def stage_crop(args: argparse.Namespace) -> dict:
    import xarray as xr

    from s2mask.bands import BAND_NAMES
    from s2mask.engine import predict
    from s2mask.mask import to_mask

    model = _load(args)
    crop = np.load(args.crop_file, mmap_mode="r")
    cube = xr.DataArray(np.array(crop), dims=("band", "y", "x"), coords={"band": list(BAND_NAMES)})
    cube = cube.sel(band=list(model.bands)).chunk({"band": -1, "y": args.chunks, "x": args.chunks})
    t0 = time.perf_counter()
    mask = to_mask(predict(cube, model, batch_size=args.batch_size)).values
    return {"seconds": time.perf_counter() - t0, "pixels": int(mask.size), "cloud": float((mask == 1).mean())}


def stage_ukis(args: argparse.Namespace) -> dict:
    from ukis_csmask.mask import CSmask

    from s2mask.bands import BAND_NAMES

    crop = np.load(args.crop_file, mmap_mode="r")
    img = np.ascontiguousarray(crop[[BAND_NAMES.index(b) for b in UKIS_BANDS]].transpose(1, 2, 0), np.float32)
    t0 = time.perf_counter()
    csm = CSmask(img, band_order=UKIS_NAMES, product_level="l1c", nodata_value=None)
    dt = time.perf_counter() - t0
    return {
        "seconds": dt,
        "pixels": int(img.shape[0] * img.shape[1]),
        "cloud": float((csm.csm == 1).mean()),
        "model": Path(csm.model_file).name,
    }


def stage_s2cloudless(args: argparse.Namespace) -> dict:
    from s2cloudless import S2PixelCloudDetector

    from s2mask.bands import BAND_NAMES

    crop = np.load(args.crop_file, mmap_mode="r")
    data = np.ascontiguousarray(
        crop[[BAND_NAMES.index(b) for b in S2CLOUDLESS_BANDS]].transpose(1, 2, 0)[None]
    )
    detector = S2PixelCloudDetector(threshold=0.4, average_over=4, dilation_size=2, all_bands=False)
    t0 = time.perf_counter()
    mask = detector.get_cloud_masks(data)
    dt = time.perf_counter() - t0
    return {"seconds": dt, "pixels": int(mask[0].size), "cloud": float(mask.mean())}


STAGES = {
    "read": stage_read,
    "infer": stage_infer,
    "full": stage_full,
    "write": stage_write,
    "crop": stage_crop,
    "ukis": stage_ukis,
    "s2cloudless": stage_s2cloudless,
}
PEERS = ("ukis", "s2cloudless")


def run_stage_here(args: argparse.Namespace) -> int:
    cpu0 = cpu_seconds()
    with PeakRSS() as rss:
        result = STAGES[args.stage](args)
    result.update(
        stage=args.stage,
        peak_rss=rss.peak,
        rusage=rusage_max_bytes(),
        load=os.getloadavg(),
        cpu_seconds=cpu_seconds() - cpu0,
    )
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------- parent


def _child(args: argparse.Namespace, stage: str, extra: list[str]) -> dict:
    python = args.peer_python if stage in PEERS else sys.executable
    cmd = [python, __file__, "--stage", stage, *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"stage": stage, "error": " | ".join(tail), "wall": time.perf_counter() - t0}
    return json.loads(lines[-1][7:])


def _write_crop(product: str, crop: int, path: Path) -> None:
    from s2mask.bands import BAND_NAMES
    from s2mask.io import open_product

    cube = open_product(product, bands=BAND_NAMES, chunks=2048)
    np.save(path, np.asarray(cube[:, :crop, :crop].values, dtype=np.float32))


def _row(r: dict) -> str:
    if "error" in r:
        return f"{r['stage']:<12} ERROR {r['error']}"
    mpx = r["pixels"] / r["seconds"] / 1e6
    extra = f"  region {r['region_px']}^2 in {r['region_seconds']:.1f} s" if "region_px" in r else ""
    return (
        f"{r['stage']:<12} {r['seconds']:8.1f} s  {mpx:6.3f} Mpx/s  peak RSS {r['peak_rss'] / GIB:5.2f} GiB"
        f"  cpu {r['cpu_seconds']:7.1f} s  load {r['load'][0]:.1f}{extra}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=10980, help="scene side (finds make_full_tile.py's product)")
    p.add_argument("--format", choices=("safe", "cog"), default="safe")
    p.add_argument("--data", type=Path, default=Path("/tmp/s2mask-bench"), help="make_full_tile.py --out")
    p.add_argument("--product", help="any product instead of --size/--format/--data")
    p.add_argument("--weights", help="weights file or shipped model name (default: see module doc)")
    p.add_argument("--width", type=int, default=16, help="width of the untrained stand-in model")
    p.add_argument("--stages", default="read,infer,full,write,crop,ukis,s2cloudless")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--chunks", type=int, default=2048)
    p.add_argument("--window", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="model threads (default: all CPUs)")
    p.add_argument("--runtime", default="auto", help="auto, torch, openvino, onnxruntime (as s2mask run)")
    p.add_argument("--precision", default="auto", help="auto, fp32, bf16, int8 (as s2mask run)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    p.add_argument("--infer-res", type=int, choices=(10, 20), default=10)
    p.add_argument("--region", type=int, default=2048, help="side of the in-memory region of 'infer'")
    p.add_argument("--crop", type=int, default=2745, help="side of the crop shared with the peers")
    p.add_argument("--peer-python", default=PEER_PYTHON)
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--stage", choices=tuple(STAGES), help=argparse.SUPPRESS)
    p.add_argument("--mask-out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--crop-file", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.product = args.product or str(product_paths(args.data, args.size)[args.format])
    if args.stage:
        return run_stage_here(args)

    args.weights = args.weights or default_weights(args.data, args.width)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(dir=args.data, prefix=".bench.") as tmp:
        mask_out = Path(tmp) / "mask.tif"
        crop_file = Path(tmp) / "crop.npy"
        common = [
            "--product",
            args.product,
            "--size",
            str(args.size),
            "--weights",
            args.weights,
            "--batch-size",
            str(args.batch_size),
            "--chunks",
            str(args.chunks),
            "--infer-res",
            str(args.infer_res),
            "--region",
            str(args.region),
            "--mask-out",
            str(mask_out),
            "--crop-file",
            str(crop_file),
        ]
        common += ["--threads", str(args.threads)] if args.threads else []
        common += ["--runtime", args.runtime, "--precision", args.precision, "--device", args.device]
        common += ["--window", str(args.window)] if args.window else []
        if {"crop", *PEERS} & set(stages):
            _write_crop(args.product, args.crop, crop_file)
        if "write" in stages and "full" not in stages:
            raise SystemExit("the 'write' stage rewrites the mask of 'full'; run both")
        results = []
        print(
            f"# {args.product}  weights={args.weights}  runtime={args.runtime}  precision={args.precision}  "
            f"batch={args.batch_size}  chunks={args.chunks}  threads={args.threads or 'all'}  "
            f"infer_res={args.infer_res}  load={os.getloadavg()[0]:.1f}"
        )
        for stage in stages:
            r = _child(args, stage, common)
            results.append(r)
            print(_row(r), flush=True)
    summary = _ratios(results)
    for k, v in summary.items():
        print(f"{k}: {v:.2f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"args": {k: str(v) for k, v in vars(args).items()}, "results": results, "ratios": summary},
                indent=1,
            )
        )
    return 0


def _ratios(results: list[dict]) -> dict[str, float]:
    ok = [r for r in results if "error" not in r]
    rate = {r["stage"]: r["pixels"] / r["seconds"] for r in ok}
    per_cpu = {r["stage"]: r["pixels"] / max(r["cpu_seconds"], 1e-9) for r in ok}
    out = {}
    for peer in PEERS:
        for mine, label in (("full", "full tile end-to-end"), ("crop", "s2mask crop")):
            if peer in rate and mine in rate:
                out[f"{label} vs {peer} (crop, in memory): px per wall s"] = rate[mine] / rate[peer]
                out[f"{label} vs {peer} (crop, in memory): px per CPU s"] = per_cpu[mine] / per_cpu[peer]
    return out


if __name__ == "__main__":
    sys.exit(main())
