"""Start-up of ``s2mask run``: seconds from launching the command to its first window, and where they go.

    python benchmarks/startup_bench.py --repeat 7
    python benchmarks/startup_bench.py --input scene.tif --repeat 7 --json startup.json

The command runs as a user runs it (``s2mask run INPUT -o OUT --overwrite``), in a fresh
interpreter each time, through a thin wrapper that notes the wall-clock time when the engine
first hands windows to the model (``s2mask.engine.predict._run_windows``) and then lets the run
finish.  "Start-up" is that moment minus the moment the parent launched the process: interpreter
start, imports, opening the input, choosing and compiling the model, and reading the first
block.  The median over ``--repeat`` runs is reported, with the whole command's wall time and
one ``-X importtime`` breakdown of the modules that cost the most.

Without ``--input`` a 13-band 512 x 512 GeoTIFF is written from the real s2cloudless test scene
(``../shared/data/s2cloudless_testscene``), or from seeded noise when that is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_full_tile import SCENE  # noqa: E402

WRAPPER = """
import importlib, sys, time
_p = importlib.import_module("s2mask.engine.predict")
_orig = _p._run_windows
_seen = []
def _first(*a, **k):
    if not _seen:
        _seen.append(time.time())
        with open({stamp!r}, "w") as f:
            f.write(repr(_seen[0]))
    return _orig(*a, **k)
_p._run_windows = _first
from s2mask.cli import main
sys.argv = ["s2mask", *{args!r}]
main()
"""


def make_input(folder: Path, size: int = 512) -> Path:
    """A 13-band uint16 COG of ``size`` px, written as the other benchmarks write theirs (``make_full_tile``):
    the real s2cloudless scene mirrored to size, or seeded noise when the shared scene is absent."""
    import numpy as np
    from make_full_tile import load_scene, mirrored_cube, write_cog

    real = SCENE.exists()
    scene = load_scene(SCENE) if real else np.random.default_rng(0).uniform(0.01, 0.5, (13, 64, 64)).astype(np.float32)
    scratch = folder / "scratch.npy"
    cube = mirrored_cube(scene[:, :size, :size], size, scratch)  # mirrored_cube only grows a scene
    path = write_cog(folder / f"startup_{size}.tif", cube, block=256)
    scratch.unlink()
    return path


def one_run(args: list[str], folder: Path) -> tuple[float, float]:
    """(seconds to the first window, seconds of the whole command) for one fresh process."""
    stamp = folder / "first_window.txt"
    stamp.unlink(missing_ok=True)
    code = WRAPPER.format(stamp=str(stamp), args=args)
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    total = time.time() - t0
    if proc.returncode != 0 or not stamp.exists():
        raise SystemExit(f"s2mask run failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return float(stamp.read_text()) - t0, total


def import_breakdown(args: list[str], top: int = 12) -> list[tuple[str, float]]:
    """Import seconds per top-level package in one run (``-X importtime`` self times, summed)."""
    code = f"import sys; from s2mask.cli import main; sys.argv = ['s2mask', *{args!r}]; main()"
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=False)
    cost: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        parts = line[len("import time:") :].split("|") if line.startswith("import time:") else []
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue
        package = parts[2].strip().split(".")[0]
        cost[package] = cost.get(package, 0.0) + int(parts[0]) / 1e6
    return sorted(cost.items(), key=lambda kv: -kv[1])[:top]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", type=Path, help="scene to mask (default: a 512 px GeoTIFF written here)")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--extra", default="", help="more `s2mask run` options, e.g. '--precision fp32'")
    p.add_argument("--json", type=Path, help="write the result here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="s2mask-startup-") as tmp:
        folder = Path(tmp)
        scene = args.input or make_input(folder)
        run_args = ["run", str(scene), "-o", str(folder / "mask.tif"), "--overwrite", *args.extra.split()]
        one_run(run_args, folder)  # warm the page cache and the bytecode cache
        firsts, totals = zip(*(one_run(run_args, folder) for _ in range(args.repeat)), strict=True)
        imports = import_breakdown(run_args)
    result = {
        "command": "s2mask " + " ".join(run_args[:1] + ["INPUT"] + run_args[2:3] + ["OUT"] + run_args[4:]),
        "input": str(args.input or "512 px 13-band GeoTIFF"),
        "repeat": args.repeat,
        "first_window_s": {"median": round(statistics.median(firsts), 3), "min": round(min(firsts), 3),
                           "max": round(max(firsts), 3)},
        "command_s": {"median": round(statistics.median(totals), 3)},
        "imports_s": {name: round(sec, 3) for name, sec in imports},
        "load": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
