"""A full Sentinel-2 tile on a GPU: seconds per tile, decode / inference split, GPU busy share.

One prepared script for a CUDA machine (issue 14), within a time budget (default 8 minutes)::

    python benchmarks/gpu_bench.py                                   # 10980^2, COG then SAFE
    python benchmarks/gpu_bench.py --size 512 --device cpu --batch-sizes 2,4 --budget 120   # a CPU check

It builds the products once (``make_full_tile.py``: a 13-band COG and an L1C SAFE of real
spectra; the SAFE's JPEG 2000 encoding is the slow part and is skipped when the budget
cannot hold it), then for each format:

* ``decode``: open the product and read every block of the 9-band cube (no model): the
  decode-bound floor of a tile from that format;
* ``infer``: the engine's numpy core on an in-memory 2048^2 region, scaled to the tile by
  window count: the model-bound floor (torch, CUDA autocast bf16/fp16, pinned copies);
* ``full`` at each ``--batch-sizes``: ``run_product`` as ``s2mask run`` does it (no
  quick-look or summary), with the GPU's busy share sampled every 100 ms through NVML
  (``pynvml``) or ``nvidia-smi``, whichever exists.

Every configuration prints one line and the whole run one JSON (``--json``).  A
configuration that would start after the budget is spent is skipped and reported as such.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_full_tile import main as make_products  # noqa: E402
from make_full_tile import product_paths  # noqa: E402


class GpuBusy:
    """Samples the GPU's utilisation (percent of time a kernel ran) in a thread; ``share`` is the mean."""

    def __init__(self, device_index: int = 0, interval: float = 0.1) -> None:
        self.samples: list[float] = []
        self.interval, self.index = interval, device_index
        self.source = "none"
        self._stop = threading.Event()
        self._read = self._reader()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _reader(self):  # noqa: ANN202
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
            self.source = "nvml"
            return lambda: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except Exception:  # noqa: BLE001 - no NVML: try the CLI
            pass
        if shutil.which("nvidia-smi"):
            self.source = "nvidia-smi"
            cmd = [
                "nvidia-smi",
                f"--id={self.index}",
                "--query-gpu=utilization.gpu",
                "--format=csv,noheader,nounits",
            ]
            return lambda: float(
                subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout.split()[0]
            )
        return None

    def _poll(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # a failed sample is a missing sample
                self.samples.append(self._read())
            time.sleep(self.interval)

    def __enter__(self) -> GpuBusy:
        if self._read is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._read is not None:
            self._thread.join(timeout=10)

    @property
    def share(self) -> float | None:
        return float(np.mean(self.samples)) / 100.0 if self.samples else None


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def decode(product: Path, chunks: int) -> float:
    import dask

    from s2mask.bands import DEFAULT_BANDS
    from s2mask.io import open_product

    t0 = time.perf_counter()
    cube = open_product(product, bands=DEFAULT_BANDS, chunks=chunks)
    dask.compute(*[dask.delayed(lambda b: b.shape)(b) for b in cube.data.to_delayed().ravel()])
    return time.perf_counter() - t0


def infer(product: Path, model, chunks: int, batch_size: int, region: int) -> dict:  # noqa: ANN001
    from full_tile_bench import infer_on_region

    return infer_on_region(
        product, model, chunks=chunks, batch_size=batch_size, region=region, sync=lambda: _sync(str(model.device))
    )


def full(product: Path, model, out: Path, chunks: int, batch_size: int) -> dict:  # noqa: ANN001
    from s2mask.run import RunOptions, run_product

    options = RunOptions(
        batch_size=batch_size,
        chunks=chunks,
        quicklook=False,
        summary=False,
        progress=False,
        overwrite=True,
        stac_item=False,
    )
    with GpuBusy() as busy:
        t0 = time.perf_counter()
        run_product(product, out, model=model, options=options)
        _sync(str(model.device))
        dt = time.perf_counter() - t0
    return {"seconds": dt, "gpu_busy": busy.share, "gpu_busy_source": busy.source}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=10980, help="tile side in 10 m px")
    p.add_argument("--out", type=Path, default=Path("/tmp/s2mask-gpu"), help="products and masks go here")
    p.add_argument("--formats", default="cog,safe")
    p.add_argument("--batch-sizes", default="8,16,32,64")
    p.add_argument("--chunks", type=int, default=2048)
    p.add_argument("--region", type=int, default=2048, help="side of the in-memory region of 'infer'")
    p.add_argument("--device", default="cuda", help="cuda (the point of this script), or cpu for a dry run")
    p.add_argument("--weights", default="s2-9")
    p.add_argument("--budget", type=float, default=480.0, help="seconds for everything, building included")
    p.add_argument(
        "--safe-build-estimate",
        type=float,
        default=200.0,
        help="seconds the SAFE's JPEG 2000 encoding is expected to take at --size 10980 (scaled by area)",
    )
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    t_start = time.perf_counter()

    def left() -> float:
        return args.budget - (time.perf_counter() - t_start)

    from s2mask.model import load_model

    model = load_model(args.weights, device=args.device, runtime="torch")
    info = {"device": str(model.device), "precision": getattr(model, "precision", "?"), "size": args.size}
    if str(model.device).startswith("cuda"):
        import torch

        info["gpu"] = torch.cuda.get_device_name(model.device)
    print("# " + json.dumps(info), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    paths = product_paths(args.out, args.size)
    results: list[dict] = []
    for fmt in [f.strip() for f in args.formats.split(",") if f.strip()]:
        if not paths[fmt].exists():
            estimate = args.safe_build_estimate * (args.size / 10980) ** 2 if fmt == "safe" else 30.0
            if estimate > left() - 60:
                results.append(
                    {
                        "format": fmt,
                        "skipped": f"building it needs about {estimate:.0f} s; {left():.0f} s left",
                    }
                )
                print(results[-1], flush=True)
                continue
            t0 = time.perf_counter()
            make_products(["--size", str(args.size), "--out", str(args.out), "--formats", fmt])
            print(f"built {fmt} in {time.perf_counter() - t0:.1f} s", flush=True)
        product = paths[fmt]
        row = {"format": fmt, "decode_seconds": decode(product, args.chunks)}
        print(f"{fmt:<5} decode {row['decode_seconds']:7.1f} s", flush=True)
        results.append(row)
        for bs in [int(b) for b in args.batch_sizes.split(",") if b.strip()]:
            if left() < 30:
                results.append({"format": fmt, "batch_size": bs, "skipped": "budget spent"})
                print(results[-1], flush=True)
                continue
            r = {"format": fmt, "batch_size": bs}
            r["infer"] = infer(product, model, args.chunks, bs, args.region)
            r["full"] = full(product, model, args.out / f"mask_{fmt}_{bs}.tif", args.chunks, bs)
            r["decode_share"] = row["decode_seconds"] / r["full"]["seconds"]
            r["infer_share"] = r["infer"]["seconds"] / r["full"]["seconds"]
            results.append(r)
            busy = r["full"]["gpu_busy"]
            print(
                f"{fmt:<5} batch {bs:3d}  tile {r['full']['seconds']:7.1f} s  "
                f"({args.size**2 / r['full']['seconds'] / 1e6:6.1f} Mpx/s)  inference alone {r['infer']['seconds']:6.1f} s  "
                f"decode alone {row['decode_seconds']:6.1f} s  GPU busy "
                + (
                    f"{busy:.0%} ({r['full']['gpu_busy_source']})"
                    if busy is not None
                    else "n/a (no NVML / nvidia-smi)"
                ),
                flush=True,
            )
    doc = {"info": info, "results": results, "seconds": time.perf_counter() - t_start}
    print("RESULT " + json.dumps(doc), flush=True)
    if args.json:
        args.json.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
