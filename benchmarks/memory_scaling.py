"""Peak RSS of the s2mask pipeline for 2745^2, 5490^2 and 10980^2 px scenes: memory must not grow with the scene.

    python benchmarks/make_full_tile.py --size 2745   # and 5490, 10980 (once)
    python benchmarks/memory_scaling.py --format cog
    python benchmarks/memory_scaling.py --sizes 2745,5490 --include results/full_10980_cog.json

Each size runs the ``full`` stage of ``full_tile_bench.py`` (``run_product``: open -> predict
-> to_mask -> write_cog, fresh subprocess, psutil sampler over the process tree) with the
same model, batch size and chunk size.  ``--include`` adds the ``full`` row of an earlier
``full_tile_bench.py --json`` run (so the slow full tile need not run twice).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
GIB = 1024**3


def run_size(size: int, args: argparse.Namespace) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
        cmd = [
            sys.executable,
            str(HERE / "full_tile_bench.py"),
            "--size",
            str(size),
            "--format",
            args.format,
            "--data",
            str(args.data),
            "--stages",
            "full",
            "--chunks",
            str(args.chunks),
            "--batch-size",
            str(args.batch_size),
            "--infer-res",
            str(args.infer_res),
            "--json",
            tmp.name,
        ]
        cmd += ["--weights", args.weights] if args.weights else []
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        return json.loads(Path(tmp.name).read_text())["results"][0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="2745,5490,10980")
    p.add_argument("--format", choices=("safe", "cog"), default="cog")
    p.add_argument("--data", type=Path, default=Path("/tmp/s2mask-bench"))
    p.add_argument("--weights")
    p.add_argument("--chunks", type=int, default=1024, help="engine block size (the s2mask run default)")
    p.add_argument("--batch-size", type=int, default=4, help="windows per model call (the s2mask run default)")
    p.add_argument("--infer-res", type=int, choices=(10, 20), default=10)
    p.add_argument("--include", type=Path, action="append", default=[], help="full_tile_bench --json files")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    rows = []
    for f in args.include:
        rows += [
            dict(r, size=int(json.loads(f.read_text())["args"]["size"]), source=str(f))
            for r in json.loads(f.read_text())["results"]
            if r.get("stage") == "full"
        ]
    for size in [int(s) for s in args.sizes.split(",") if s.strip()]:
        rows.append(dict(run_size(size, args), size=size))
    print(f"{'scene':>13} {'wall s':>8} {'Mpx/s':>7} {'peak RSS GiB':>13} {'CPU s':>8} {'load':>5}")
    for r in sorted(rows, key=lambda r: r["size"]):
        if "error" in r:
            print(f"{r['size']:>6}^2 px  ERROR {r['error']}")
            continue
        print(
            f"{r['size']:>6}^2 px {r['seconds']:8.1f} {r['pixels'] / r['seconds'] / 1e6:7.3f} "
            f"{r['peak_rss'] / GIB:13.2f} {r['cpu_seconds']:8.1f} {r['load'][0]:5.1f}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
