"""Window geometry against accuracy: the engine's masks on the real labelled scenes at several window/overlap pairs.

    python benchmarks/window_accuracy.py --geometry 256/32 --geometry 512/32 --geometry 512/64
    python benchmarks/window_accuracy.py --weights rgbn --precision fp32 --json win.json

Each scene (ukis-csmask's test scene against its reference mask, the s2cloudless scene against
its cloud mask, the Accra L2A chip against Sen2Cor's SCL; ``training.real_scenes``) runs through
:func:`s2mask.engine.predict.predict_array`, the path ``s2mask run`` takes (windows, blending),
with each ``window/overlap``. Reported per geometry: macro IoU (ukis, Accra), cloud IoU (s2cloudless),
the share of pixels whose class differs from the first geometry, the window pixels the model runs
per scene pixel on a full tile (what inference costs), and the model's seconds on these scenes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT / ".." / "shared" / "data"


def window_cost(window: int, overlap: int, size: int = 10980) -> float:
    """Window pixels the model runs per scene pixel on a ``size``^2 tile."""
    from s2mask.engine.windows import WindowGrid

    return len(WindowGrid(size, size, window, overlap)) * window * window / size**2


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="s2-9")
    p.add_argument("--precision", default="auto")
    p.add_argument("--geometry", action="append", help="WINDOW/OVERLAP (repeat; the first is the reference)")
    p.add_argument("--shared-data", type=Path, default=SHARED)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    geometries = [tuple(int(v) for v in g.split("/")) for g in (args.geometry or ["256/32", "512/32", "512/64"])]

    from s2mask.engine.predict import predict_array
    from s2mask.model import load_model
    from training.real_scenes import (
        _cloud_ious,
        _three_class,
        accra_scene,
        approximate_bands,
        s2cloudless_scene,
        ukis_scene,
    )

    model = load_model(args.weights, precision=args.precision)
    scenes = {"ukis": ukis_scene, "s2cloudless": s2cloudless_scene, "accra": accra_scene}
    inputs = {}
    for name, load in scenes.items():
        have, ref = load(args.shared_data)
        inputs[name] = (approximate_bands(have, tuple(model.bands))[0], ref)

    results: list[dict] = []
    first: dict[str, np.ndarray] = {}
    for window, overlap in geometries:
        row: dict = {"window": window, "overlap": overlap, "window_px_per_scene_px": round(window_cost(window, overlap), 3)}
        seconds = 0.0
        for name, (x, ref) in inputs.items():
            t0 = time.perf_counter()
            probs = predict_array(x, model, window=window, overlap=overlap, batch_size=4)
            seconds += time.perf_counter() - t0
            pred = np.nan_to_num(probs, nan=-1).argmax(0).astype(np.uint8)
            if name == "s2cloudless":
                row[name] = _cloud_ious(pred == 1, ref)
            else:
                m = _three_class(ref, pred)
                row[name] = {"macro_iou": round(m["macro_iou"], 4), "cloud_iou": round(m["per_class_iou"]["cloud"], 4),
                             "shadow_iou": round(m["per_class_iou"]["shadow"], 4)}
            first.setdefault(name, pred)
            row[name]["changed_vs_first"] = round(float((pred != first[name]).mean()), 5)
        row["model_seconds"] = round(seconds, 2)
        results.append(row)
        print(json.dumps(row), flush=True)
    out = {"weights": args.weights, "precision": args.precision, "runtime": getattr(model, "runtime", "torch"),
           "shapes": {k: list(v[0].shape) for k, v in inputs.items()}, "results": results}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
